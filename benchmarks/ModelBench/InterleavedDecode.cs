using System.Diagnostics;
using System.Globalization;
using MoeCompiler.Runtime.Diagnostics;
using MoeCompiler.Runtime.Generation;

namespace ModelBench;

/// <summary>
/// Paired decode measurement on a machine whose memory bandwidth moves with its neighbours: our generation calls
/// <see cref="OnToken"/> after every token; after the last token of each round it pauses there, runs one read-bandwidth probe, then the
/// same number of decode steps of every waiting peer session (PyTorch, llama.cpp, libtorch), so each round's numbers see nearly the same machine. Our round time runs from the end of the previous pause (or from the first
/// token, made by the prefill) to the start of this one: TextGenerator's own Timings.Decode would include the
/// pauses, so it is not used.
/// </summary>
/// <remarks>
/// Peak memory: the probe allocates its buffer (1 GiB by default) in this process and frees it (a native
/// allocation that size is its own mapping, returned to the kernel at once). So that VmHWM counts only the model,
/// each pause first reads VmHWM (the peak of our work since the last reset) and, after the probe, restarts it at
/// the current resident size; the run's peak is the largest of those readings and the one after generation.
/// </remarks>
public sealed class InterleavedDecode(int[] roundSteps, IReadOnlyList<PeerSession> torch, BenchOptions options, TextWriter log)
{
    private readonly List<DecodeRound> _rounds = [];
    private long _segmentStart;
    private int _nextBoundary = roundSteps[0];

    public IReadOnlyList<DecodeRound> Rounds => _rounds;

    /// <summary>The largest VmHWM read at the pauses (KiB): our peak before each probe.</summary>
    public long PeakKiB { get; private set; }

    /// <summary>Wall time spent inside the pauses (PyTorch rounds, probes, logging).</summary>
    public TimeSpan Paused { get; private set; }

    public void OnToken(GeneratedToken token)
    {
        long now = Stopwatch.GetTimestamp();
        if (token.Id < 0) return; // a decoder's final text, no token
        if (token.Index == 0)
        {
            _segmentStart = now; // the prefill's token: decode starts here
            return;
        }
        if (_rounds.Count == roundSteps.Length || token.Index != _nextBoundary) return;

        double ours = Stopwatch.GetElapsedTime(_segmentStart, now).TotalSeconds;
        PeakKiB = Math.Max(PeakKiB, ResidentMemory.PeakKiB());
        int steps = roundSteps[_rounds.Count];
        // The probe first, right after our steps; then PyTorch's. One repetition of the probe (three timed passes
        // over the buffer) keeps a pause short.
        long probeStart = Stopwatch.GetTimestamp();
        double bandwidth = MachineLimits.MeasureReadBandwidth(options.Threads, (long)options.BandwidthMiB << 20, repetitions: 1);
        var probeTime = Stopwatch.GetElapsedTime(probeStart);
        var torchSeconds = torch.Select(s => s.Decode(steps)).ToArray();
        ResidentMemory.ResetPeak();
        var round = new DecodeRound(steps, ours, torchSeconds, bandwidth);
        _rounds.Add(round);
        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  round {_rounds.Count}: {steps} steps, ours {round.OursTokensPerSecond:F2} tokens/s") +
            string.Concat(torch.Select((s, i) => string.Create(CultureInfo.InvariantCulture, $", {s.Label} {round.TorchTokensPerSecond(i):F2}"))) +
            string.Create(CultureInfo.InvariantCulture, $", probe {bandwidth / 1e9:F1} GB/s ({probeTime.TotalSeconds:F2} s)"));
        if (_rounds.Count < roundSteps.Length) _nextBoundary += roundSteps[_rounds.Count];
        long resume = Stopwatch.GetTimestamp();
        Paused += Stopwatch.GetElapsedTime(now, resume);
        _segmentStart = resume;
    }
}

/// <summary>This process's resident-memory high-water mark (Linux /proc).</summary>
public static class ResidentMemory
{
    /// <summary>Restarts VmHWM at the current RSS (Linux ≥ 4.0: "5" to /proc/self/clear_refs); false where that is not possible.</summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>VmHWM of this process (Linux), KiB; 0 where /proc is not available.</summary>
    public static long PeakKiB()
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return 0;
        foreach (string line in File.ReadLines(status))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        return 0;
    }
}
