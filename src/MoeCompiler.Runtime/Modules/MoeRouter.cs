using MoeCompiler.Runtime.Kernels;

namespace MoeCompiler.Runtime.Modules;

/// <summary>How router logits become expert choices and weights.</summary>
public enum MoeRoutingKind
{
    /// <summary>DeepSpeed 0.9.5 TopKGate (MoE-LLaVA): top-1 or top-2 with per-expert capacity and positional dropping.</summary>
    DeepSpeed,
    /// <summary>Softmax over all experts, top-k, divide by their sum; no capacity (Mixtral, CuMo).</summary>
    Mixtral,
}

public enum SecondExpertPolicy
{
    /// <summary>The second-highest probability (ties: the lower index).</summary>
    Deterministic,
    /// <summary>DeepSpeed's Gumbel-max sample over the other experts, drawn from <see cref="ForwardContext.Random"/>.</summary>
    Sampled,
}

/// <summary>One MoE layer's routing settings (the spec's <c>moe</c> block).</summary>
public sealed record MoeOptions(int Experts, int TopK, MoeRoutingKind Routing, double EvalCapacityFactor, int MinCapacity,
    SecondExpertPolicy SecondExpert)
{
    public void Validate()
    {
        if (Experts <= 0) throw new ArgumentException($"MoE options {this}: need at least one expert");
        if (TopK <= 0 || TopK > Experts) throw new ArgumentException($"MoE options {this}: top-k must be in 1..{Experts}");
        if (Routing == MoeRoutingKind.DeepSpeed && TopK > 2)
            throw new ArgumentException($"MoE options {this}: DeepSpeed gating supports only top-1 and top-2");
        if (Routing == MoeRoutingKind.DeepSpeed && !(EvalCapacityFactor > 0))
            throw new ArgumentException($"MoE options {this}: the eval capacity factor must be positive");
        if (MinCapacity < 0) throw new ArgumentException($"MoE options {this}: min capacity must not be negative");
    }
}

/// <summary>
/// The routing math of an MoE layer on host floats, separate from the expert compute so it can be tested and
/// reused by tools. Reading of DeepSpeed 0.9.5 <c>sharded_moe.py</c> (what MoE-LLaVA runs):
/// <list type="bullet">
/// <item>p = softmax(logits) in f32 over all experts; first choice e1 = argmax p (first index on ties).</item>
/// <item>top-2: the second choice is argmax over e ≠ e1 of (logits + g), g = −log(−log U), U uniform in (0, 1)
///   — drawn even in eval; <see cref="SecondExpertPolicy.Deterministic"/> uses the second-highest p instead.
///   Capacity C = max(ceil(S/E · factor · 2), minCapacity); slots are counted per expert in token order, all first
///   choices (kept or not) before any second choice; a choice whose slot is ≥ C is dropped (expert −1, weight 0).
///   Weights w = p[e]·keep, divided by max(w1 + w2, ε) with ε the f32 machine epsilon.</item>
/// <item>top-1: C = max(ceil(S/E · factor), minCapacity); weight p[e1], not renormalised. When an expert is over
///   capacity DeepSpeed keeps a random subset of its tokens (random token selection, on by default):
///   <see cref="SecondExpertPolicy.Sampled"/> does that with the context's generator, Deterministic keeps the
///   earliest tokens.</item>
/// </list>
/// S/E · factor · k is evaluated in f32 as torch does (a Python float times an f32 tensor) before the ceiling.
/// </summary>
public static class MoeRouter
{
    /// <summary>torch.finfo(torch.float32).eps.</summary>
    public const float Float32Epsilon = 1.1920929e-07f;

    public static int Capacity(int tokens, int experts, int topK, double capacityFactor, int minCapacity)
    {
        float perExpert = (float)((double)tokens / experts);
        float scaled = perExpert * (float)(capacityFactor * topK);
        int capacity = (int)MathF.Ceiling(scaled);
        return Math.Max(capacity, minCapacity);
    }

    /// <summary>
    /// Routes <paramref name="tokens"/> rows of router <paramref name="logits"/> [tokens, experts].
    /// Writes <paramref name="chosen"/> [tokens, topK] (expert per choice, −1 when dropped by capacity) and
    /// <paramref name="weights"/> [tokens, topK]; <paramref name="probabilities"/> [tokens, experts] is scratch
    /// that ends up holding the softmax. Choice order per token: first choice, second choice, ...
    /// </summary>
    public static void Route(ReadOnlySpan<float> logits, int tokens, MoeOptions options, Random? random,
        Span<int> chosen, Span<float> weights, Span<float> probabilities)
    {
        ArgumentNullException.ThrowIfNull(options);
        int experts = options.Experts, k = options.TopK;
        if (logits.Length < tokens * experts || probabilities.Length < tokens * experts)
            throw new ArgumentException($"router logits hold {logits.Length} values; {tokens} tokens × {experts} experts needed");
        if (chosen.Length < tokens * k || weights.Length < tokens * k)
            throw new ArgumentException("routing output spans are too short");

        for (int t = 0; t < tokens; t++)
            Softmax(logits.Slice(t * experts, experts), probabilities.Slice(t * experts, experts));

        if (options.Routing == MoeRoutingKind.Mixtral)
        {
            RouteTopKRenormalised(probabilities, tokens, experts, k, chosen, weights);
            return;
        }

        bool sampled = options.SecondExpert == SecondExpertPolicy.Sampled;
        if (sampled && random is null)
            throw new InvalidOperationException("the sampled second-expert policy needs ForwardContext.Random (seed it for reproducible runs)");
        int capacity = Capacity(tokens, experts, k, options.EvalCapacityFactor, options.MinCapacity);

        for (int t = 0; t < tokens; t++)
            chosen[t * k] = ArgMax(probabilities.Slice(t * experts, experts), exclude: -1);

        if (k == 1)
        {
            ApplyTop1Capacity(tokens, experts, capacity, sampled ? random : null, chosen);
            for (int t = 0; t < tokens; t++)
                weights[t] = chosen[t] >= 0 ? probabilities[t * experts + chosen[t]] : 0f;
            return;
        }

        // Second choices.
        for (int t = 0; t < tokens; t++)
        {
            int first = chosen[t * 2];
            int second;
            if (sampled)
            {
                second = -1;
                float best = float.NegativeInfinity;
                for (int e = 0; e < experts; e++)
                {
                    float noisy = logits[t * experts + e] + GumbelNoise(random!);
                    if (e != first && (second < 0 || noisy > best))
                    {
                        best = noisy;
                        second = e;
                    }
                }
            }
            else
            {
                second = ArgMax(probabilities.Slice(t * experts, experts), exclude: first);
            }
            chosen[t * 2 + 1] = second;
        }

        // Capacity: every expert's slots go to first choices in token order, then to second choices.
        Span<int> used = experts <= 256 ? stackalloc int[experts] : new int[experts];
        used.Clear();
        for (int choice = 0; choice < 2; choice++)
        {
            for (int t = 0; t < tokens; t++)
            {
                int e = chosen[t * 2 + choice];
                if (e < 0) continue;
                int slot = used[e]++;
                if (slot >= capacity) chosen[t * 2 + choice] = -1;
            }
        }

        for (int t = 0; t < tokens; t++)
        {
            int e1 = chosen[t * 2], e2 = chosen[t * 2 + 1];
            float w1 = e1 >= 0 ? probabilities[t * experts + e1] : 0f;
            float w2 = e2 >= 0 ? probabilities[t * experts + e2] : 0f;
            float denominator = MathF.Max(w1 + w2, Float32Epsilon);
            weights[t * 2] = w1 / denominator;
            weights[t * 2 + 1] = w2 / denominator;
        }
    }

    /// <summary>A standard Gumbel sample −log(−log U), U uniform in [tiny, 1 − ε) as torch's Gumbel draws it.</summary>
    public static float GumbelNoise(Random random)
    {
        double u = random.NextDouble();
        u = Math.Clamp(u, 1.1754943508222875e-38, 1.0 - Float32Epsilon);
        return (float)-Math.Log(-Math.Log(u));
    }

    private static void RouteTopKRenormalised(ReadOnlySpan<float> probabilities, int tokens, int experts, int k,
        Span<int> chosen, Span<float> weights)
    {
        for (int t = 0; t < tokens; t++)
        {
            var picked = weights.Slice(t * k, k);
            TopK.Select(probabilities.Slice(t * experts, experts), k, chosen.Slice(t * k, k), picked);
            float sum = 0f;
            for (int j = 0; j < k; j++) sum += picked[j];
            for (int j = 0; j < k; j++) picked[j] /= sum;
        }
    }

    private static void ApplyTop1Capacity(int tokens, int experts, int capacity, Random? random, Span<int> chosen)
    {
        Span<int> counts = experts <= 256 ? stackalloc int[experts] : new int[experts];
        counts.Clear();
        for (int t = 0; t < tokens; t++) counts[chosen[t]]++;
        for (int e = 0; e < experts; e++)
        {
            if (counts[e] <= capacity) continue;
            if (random is null)
            {
                int kept = 0;
                for (int t = 0; t < tokens; t++)
                {
                    if (chosen[t] != e) continue;
                    if (kept++ >= capacity) chosen[t] = -1;
                }
            }
            else
            {
                // Random token selection: every token of the expert gets a uniform priority; the top C stay.
                var members = new int[counts[e]];
                var priorities = new double[counts[e]];
                int n = 0;
                for (int t = 0; t < tokens; t++)
                {
                    if (chosen[t] != e) continue;
                    members[n] = t;
                    priorities[n] = random.NextDouble();
                    n++;
                }
                Array.Sort(priorities, members);
                for (int i = 0; i < n - capacity; i++) chosen[members[i]] = -1;
            }
        }
    }

    /// <summary>f32 softmax with the max subtracted, as torch computes it.</summary>
    private static void Softmax(ReadOnlySpan<float> x, Span<float> y)
    {
        float max = float.NegativeInfinity;
        foreach (float v in x) max = MathF.Max(max, v);
        float sum = 0f;
        for (int i = 0; i < x.Length; i++)
        {
            y[i] = MathF.Exp(x[i] - max);
            sum += y[i];
        }
        for (int i = 0; i < x.Length; i++) y[i] /= sum;
    }

    private static int ArgMax(ReadOnlySpan<float> p, int exclude)
    {
        int best = -1;
        for (int e = 0; e < p.Length; e++)
        {
            if (e == exclude) continue;
            if (best < 0 || p[e] > p[best]) best = e;
        }
        return best;
    }
}
