namespace MoeCompiler.Runtime.Generation;

/// <summary>
/// Picks the next token from one row of logits. Only ids below the tokenizer size are candidates (the reference
/// shrinks lm_head to len(tokenizer); the padded rows of the real checkpoints are never produced).
/// Deterministic: the random stream is a SplitMix64 sequence from <see cref="SamplingOptions.Seed"/>, independent
/// of the .NET version.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly int _candidates;
    private readonly float[] _scratch;
    private readonly int[] _order;
    private readonly float[] _sortKeys;
    private ulong _state;
    private const float NegligibleGap = 40f;

    public Sampler(SamplingOptions options, int tokenizerSize)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (tokenizerSize <= 0) throw new ArgumentOutOfRangeException(nameof(tokenizerSize), tokenizerSize, "the tokenizer size must be positive");
        _options = options;
        _candidates = tokenizerSize;
        _scratch = new float[tokenizerSize];
        _order = new int[tokenizerSize];
        _sortKeys = new float[tokenizerSize];
        _state = options.Seed;
    }

    public SamplingOptions Options => _options;

    /// <summary>
    /// The next id. <paramref name="logits"/> is one row of the model's output (at least tokenizer-size long);
    /// <paramref name="previousIds"/> are the ids the repetition penalty applies to (prompt and output so far;
    /// negative placeholders such as image tokens are ignored).
    /// </summary>
    public int Next(ReadOnlySpan<float> logits, ReadOnlySpan<int> previousIds = default)
    {
        if (logits.Length < _candidates)
            throw new ArgumentException($"logits row has {logits.Length} entries, fewer than the tokenizer size {_candidates}", nameof(logits));
        Span<float> scores = _scratch;
        logits[.._candidates].CopyTo(scores);
        for (int i = 0; i < scores.Length; i++)
            if (float.IsNaN(scores[i])) throw new InvalidOperationException($"the model produced NaN for token {i}");

        if (_options.RepetitionPenalty != 1f) ApplyRepetitionPenalty(scores, previousIds, _options.RepetitionPenalty);
        if (_options.Temperature == 0f) return ArgMax(scores);

        float invTemperature = 1f / _options.Temperature;
        for (int i = 0; i < scores.Length; i++) scores[i] *= invTemperature;

        // Candidates sorted by descending score, then truncated by top-k and top-p.
        // Tokens more than NegligibleGap below the best have probability below e^-40 relative to it and are left
        // out of the sort (a 150k vocabulary would otherwise cost a full sort per token); the total mass they
        // carry is < 1e-12, far below anything a top-p threshold or the random draw can resolve.
        float best = scores[ArgMax(scores)];
        if (float.IsNegativeInfinity(best)) throw new InvalidOperationException("every candidate token has probability zero");
        int count = 0;
        int[] order = _order;
        float[] keys = _sortKeys;
        for (int i = 0; i < scores.Length; i++)
        {
            if (scores[i] < best - NegligibleGap) continue;
            order[count] = i;
            keys[count++] = -scores[i];
        }
        // Primitive-key sort (fast for a 150k vocabulary); equal scores keep an order that depends only on the input.
        Array.Sort(keys, order, 0, count);
        int kept = _options.TopK > 0 ? Math.Min(_options.TopK, count) : count;

        double max = best;
        double total = 0;
        for (int i = 0; i < kept; i++) total += Math.Exp(scores[order[i]] - max);
        if (_options.TopP < 1f)
        {
            // Smallest prefix whose probability reaches top-p (at least one token).
            double cumulative = 0;
            int prefix = 0;
            while (prefix < kept)
            {
                cumulative += Math.Exp(scores[order[prefix]] - max) / total;
                prefix++;
                if (cumulative >= _options.TopP) break;
            }
            kept = prefix;
            total = 0;
            for (int i = 0; i < kept; i++) total += Math.Exp(scores[order[i]] - max);
        }

        double target = NextUniform() * total;
        double running = 0;
        for (int i = 0; i < kept; i++)
        {
            running += Math.Exp(scores[order[i]] - max);
            if (target < running) return order[i];
        }
        return order[kept - 1]; // rounding at the very top of the range
    }

    /// <summary>Index of the largest value; the lowest index on ties.</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        if (values.IsEmpty) throw new ArgumentException("no values", nameof(values));
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    private static void ApplyRepetitionPenalty(Span<float> scores, ReadOnlySpan<int> previousIds, float penalty)
    {
        // Each distinct id is penalised once, however often it occurred.
        var seen = new HashSet<int>();
        foreach (int id in previousIds)
        {
            if (id < 0 || id >= scores.Length || !seen.Add(id)) continue;
            scores[id] = scores[id] > 0 ? scores[id] / penalty : scores[id] * penalty;
        }
    }

    /// <summary>Uniform in [0, 1) with 53 random bits (SplitMix64).</summary>
    private double NextUniform()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }
}
