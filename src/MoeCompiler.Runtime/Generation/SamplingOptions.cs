namespace MoeCompiler.Runtime.Generation;

/// <summary>
/// How the next token is chosen from the logits. Temperature 0 means greedy (argmax, lowest id on ties); the
/// other knobs follow the Hugging Face conventions so settings carry over from the reference CLI.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>0 = greedy. Logits are divided by it before top-k / top-p / softmax.</summary>
    public float Temperature { get; init; }
    /// <summary>Nucleus sampling: keep the most likely tokens whose probabilities sum to at least this (1 = off).</summary>
    public float TopP { get; init; } = 1f;
    /// <summary>Keep only the k most likely tokens (0 = off).</summary>
    public int TopK { get; init; }
    /// <summary>
    /// CTRL-style penalty for ids already in the prompt or output: positive logits are divided by it, negative
    /// ones multiplied (1 = off). Applied before greedy selection too.
    /// </summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>Seed of the sampling random stream; the same seed and logits give the same tokens.</summary>
    public ulong Seed { get; init; } = 0x5EED;

    public static SamplingOptions Greedy { get; } = new();

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature))
            throw new ArgumentException($"temperature must be a finite number ≥ 0, got {Temperature}");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top-p must be in (0, 1], got {TopP}");
        if (TopK < 0) throw new ArgumentException($"top-k must be ≥ 0, got {TopK}");
        if (!(RepetitionPenalty > 0) || float.IsInfinity(RepetitionPenalty))
            throw new ArgumentException($"repetition penalty must be a finite number > 0, got {RepetitionPenalty}");
    }
}
