namespace ModelBench;

/// <summary>
/// One decode round: <see cref="Steps"/> decode steps of ours, then one read-bandwidth probe, then the same number of
/// steps of each PyTorch configuration, back to back, so they see nearly the same machine.
/// </summary>
/// <param name="OursSeconds">Wall seconds of our steps in this round, the pauses for PyTorch and the probe excluded.</param>
/// <param name="TorchSeconds">Wall seconds of each PyTorch configuration's steps, as its script timed them (in the order of --torch-dtype).</param>
/// <param name="BytesPerSecond">The probe's read bandwidth, right after our steps.</param>
public sealed record DecodeRound(int Steps, double OursSeconds, IReadOnlyList<double> TorchSeconds, double BytesPerSecond)
{
    public double OursTokensPerSecond => Steps / OursSeconds;
    public double TorchTokensPerSecond(int configuration) => Steps / TorchSeconds[configuration];

    /// <summary>Decode tokens/s the probed bandwidth allows when each token reads <paramref name="bytesPerToken"/>.</summary>
    public double LimitTokensPerSecond(long bytesPerToken) => BytesPerSecond / bytesPerToken;
}

public static class DecodeRounds
{
    /// <summary>Steps per round: <paramref name="steps"/> split into <paramref name="rounds"/> sizes differing by at
    /// most one (the larger first), e.g. 32 in 4 → 8 8 8 8, 10 in 4 → 3 3 2 2.</summary>
    public static int[] Split(int steps, int rounds)
    {
        if (rounds < 1 || rounds > steps)
            throw new ArgumentOutOfRangeException(nameof(rounds), $"{rounds} rounds cannot split {steps} decode steps (1 ≤ rounds ≤ steps)");
        var sizes = new int[rounds];
        for (int r = 0; r < rounds; r++) sizes[r] = steps / rounds + (r < steps % rounds ? 1 : 0);
        return sizes;
    }

    /// <summary>The median (the mean of the middle two for an even count).</summary>
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) throw new ArgumentException("the median of nothing", nameof(values));
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
