using MoeCompiler.Runtime.Modules;

namespace MoeCompiler.Runtime.Tests.Modules;

/// <summary>Routing math: DeepSpeed top-1/top-2 with capacity, Mixtral renormalisation, sampled second expert.</summary>
public sealed class MoeRouterTests
{
    private static MoeOptions DeepSpeed(int experts, int k, double factor = 2.0, int min = 0,
        SecondExpertPolicy policy = SecondExpertPolicy.Deterministic) => new(experts, k, MoeRoutingKind.DeepSpeed, factor, min, policy);

    private static (int[] Chosen, float[] Weights, float[] P) Route(float[] logits, int tokens, MoeOptions options, Random? random = null)
    {
        var chosen = new int[tokens * options.TopK];
        var weights = new float[tokens * options.TopK];
        var p = new float[tokens * options.Experts];
        MoeRouter.Route(logits, tokens, options, random, chosen, weights, p);
        return (chosen, weights, p);
    }

    private static double[] Softmax(ReadOnlySpan<float> x)
    {
        var y = new double[x.Length];
        double max = double.NegativeInfinity, sum = 0;
        foreach (float v in x) max = Math.Max(max, v);
        for (int i = 0; i < x.Length; i++) { y[i] = Math.Exp(x[i] - max); sum += y[i]; }
        for (int i = 0; i < x.Length; i++) y[i] /= sum;
        return y;
    }

    /// <summary>Experts by descending probability, ties to the lower index.</summary>
    private static int[] Ranking(double[] p) => Enumerable.Range(0, p.Length).OrderByDescending(e => p[e]).ThenBy(e => e).ToArray();

    [Theory]
    [InlineData(576, 4, 2, 2.0, 0, 576)]   // released eval settings: C = S, nothing dropped
    [InlineData(1, 4, 2, 2.0, 0, 1)]       // one decoded token
    [InlineData(5, 4, 2, 1.5, 0, 4)]       // ceil(1.25 · 3)
    [InlineData(5, 4, 1, 1.5, 0, 2)]       // top-1: ceil(1.25 · 1.5)
    [InlineData(3, 4, 2, 0.5, 4, 4)]       // min capacity wins
    public void CapacityIsCeilOfTokensPerExpertTimesFactorTimesK(int tokens, int experts, int k, double factor, int min, int expected)
        => Assert.Equal(expected, MoeRouter.Capacity(tokens, experts, k, factor, min));

    [Theory]
    [InlineData(2.0, 0)]
    [InlineData(0.5, 0)]
    [InlineData(0.3, 2)]
    public void DeterministicTop2MatchesIndependentLoop(double factor, int minCapacity)
    {
        int tokens = 40, experts = 4;
        var random = new Random(71);
        var logits = Naive.RandomArray(random, tokens * experts, 2);
        var options = DeepSpeed(experts, 2, factor, minCapacity);
        var (chosen, weights, _) = Route(logits, tokens, options);

        int capacity = Math.Max((int)Math.Ceiling(tokens / (double)experts * factor * 2), minCapacity);
        var p = new double[tokens][];
        var first = new int[tokens];
        var second = new int[tokens];
        for (int t = 0; t < tokens; t++)
        {
            p[t] = Softmax(logits.AsSpan(t * experts, experts));
            var rank = Ranking(p[t]);
            (first[t], second[t]) = (rank[0], rank[1]);
        }
        var load = new int[experts];
        var keepFirst = new bool[tokens];
        var keepSecond = new bool[tokens];
        for (int t = 0; t < tokens; t++) keepFirst[t] = load[first[t]]++ < capacity;
        for (int t = 0; t < tokens; t++) keepSecond[t] = load[second[t]]++ < capacity;
        int dropped = 0;
        for (int t = 0; t < tokens; t++)
        {
            double w1 = keepFirst[t] ? p[t][first[t]] : 0, w2 = keepSecond[t] ? p[t][second[t]] : 0;
            double denominator = Math.Max(w1 + w2, 1.1920929e-07);
            Assert.Equal(keepFirst[t] ? first[t] : -1, chosen[2 * t]);
            Assert.Equal(keepSecond[t] ? second[t] : -1, chosen[2 * t + 1]);
            Assert.Equal(w1 / denominator, weights[2 * t], 1e-6);
            Assert.Equal(w2 / denominator, weights[2 * t + 1], 1e-6);
            dropped += (keepFirst[t] ? 0 : 1) + (keepSecond[t] ? 0 : 1);
        }
        if (factor < 1) Assert.True(dropped > 0, "the small capacity factor should drop something");
        else Assert.Equal(0, dropped);
    }

    [Fact]
    public void CapacitySlotsGoToAllFirstChoicesBeforeAnySecondChoice()
    {
        // E = 2, S = 4, factor 0.5 → C = ceil(2 · 0.5 · 2) = 2 slots per expert.
        // First choices: t0→0, t1→1, t2→0, t3→0. Expert 0: t0, t2 kept, t3 dropped (3 first choices).
        // Second choices: t0→1 takes expert 1's second slot; t1→0 finds expert 0 full; t2→1 and t3→1 find it full.
        float[] logits = [2, 0, 0, 2, 1, 0, 3, 0];
        var (chosen, weights, p) = Route(logits, 4, DeepSpeed(2, 2, 0.5));
        Assert.Equal([0, 1, 1, -1, 0, -1, -1, -1], chosen);
        Assert.Equal(p[0] / (p[0] + p[1]), weights[0], 6);
        Assert.Equal(p[1] / (p[0] + p[1]), weights[1], 6);
        Assert.Equal([1f, 0f, 1f, 0f, 0f, 0f], weights[2..]); // one survivor gets weight 1; none: only the residual passes

        var (relaxed, _, _) = Route(logits, 4, DeepSpeed(2, 2, 0.5, min: 4));
        Assert.DoesNotContain(-1, relaxed);
    }

    [Fact]
    public void Top1KeepsTheProbabilityWithoutRenormalisingAndDropsLateTokens()
    {
        // E = 2, S = 4, factor 1 → C = 2. All four prefer expert 1: tokens 2 and 3 are dropped (deterministic keeps the earliest).
        float[] logits = [0, 1, 0, 2, 0, 3, 0, 4];
        var (chosen, weights, p) = Route(logits, 4, DeepSpeed(2, 1, 1.0));
        Assert.Equal([1, 1, -1, -1], chosen);
        Assert.Equal(p[1], weights[0]);
        Assert.Equal(1 / (1 + Math.Exp(-1)), weights[0], 6);
        Assert.Equal(p[3], weights[1]);
        Assert.Equal([0f, 0f], weights[2..]);
    }

    [Fact]
    public void Top1SampledKeepsARandomSubsetOfTheCapacity()
    {
        var logits = new float[40];
        for (int t = 0; t < 20; t++) logits[2 * t + 1] = 1; // all 20 tokens prefer expert 1; C = ceil(10 · 1) = 10
        var (a, _, _) = Route(logits, 20, DeepSpeed(2, 1, 1.0, policy: SecondExpertPolicy.Sampled), new Random(5));
        var (b, _, _) = Route(logits, 20, DeepSpeed(2, 1, 1.0, policy: SecondExpertPolicy.Sampled), new Random(5));
        Assert.Equal(a, b);
        Assert.Equal(10, a.Count(e => e == 1));
        Assert.Equal(10, a.Count(e => e == -1));
        Assert.NotEqual(Enumerable.Range(0, 20).Select(t => t < 10 ? 1 : -1), a); // not simply the first ten
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void MixtralRoutingRenormalisesTheTopK(int k)
    {
        int tokens = 30, experts = 8;
        var logits = Naive.RandomArray(new Random(81), tokens * experts, 3);
        var (chosen, weights, _) = Route(logits, tokens, new MoeOptions(experts, k, MoeRoutingKind.Mixtral, 0.01, 0, SecondExpertPolicy.Sampled));
        for (int t = 0; t < tokens; t++)
        {
            var p = Softmax(logits.AsSpan(t * experts, experts));
            var rank = Ranking(p);
            double sum = 0;
            for (int j = 0; j < k; j++) sum += p[rank[j]];
            for (int j = 0; j < k; j++)
            {
                Assert.Equal(rank[j], chosen[t * k + j]); // no capacity even with a tiny factor, no sampling
                Assert.Equal(p[rank[j]] / sum, weights[t * k + j], 1e-6);
            }
        }
    }

    [Fact]
    public void SampledSecondExpertIsSeededAndFollowsTheGumbelMaxDistribution()
    {
        int tokens = 20000, experts = 4;
        var logits = new float[tokens * experts];
        for (int t = 0; t < tokens; t++) { logits[t * 4] = 2; logits[t * 4 + 1] = 1; logits[t * 4 + 2] = 0; logits[t * 4 + 3] = -1; }
        var options = DeepSpeed(experts, 2, policy: SecondExpertPolicy.Sampled);
        var (a, wa, _) = Route(logits, tokens, options, new Random(42));
        var (b, wb, _) = Route(logits, tokens, options, new Random(42));
        Assert.Equal(a, b);
        Assert.Equal(wa, wb);
        var (c, _, _) = Route(logits, tokens, options, new Random(43));
        Assert.NotEqual(a, c);

        var counts = new int[experts];
        for (int t = 0; t < tokens; t++)
        {
            Assert.Equal(0, a[2 * t]);
            counts[a[2 * t + 1]]++;
        }
        // Gumbel-max over experts 1..3 samples softmax(logits[1..3]) = e^1, e^0, e^-1 normalised.
        double z = Math.Exp(1) + 1 + Math.Exp(-1);
        Assert.Equal(Math.Exp(1) / z, counts[1] / (double)tokens, 0.02);
        Assert.Equal(1 / z, counts[2] / (double)tokens, 0.02);
        Assert.Equal(Math.Exp(-1) / z, counts[3] / (double)tokens, 0.02);

        var (deterministic, _, _) = Route(logits, tokens, DeepSpeed(experts, 2));
        Assert.All(Enumerable.Range(0, tokens), t => Assert.Equal(1, deterministic[2 * t + 1]));
        Assert.Throws<InvalidOperationException>(() => Route(logits, tokens, options, random: null));
    }

    [Fact]
    public void OptionsAreValidated()
    {
        Assert.Throws<ArgumentException>(() => DeepSpeed(4, 3).Validate());
        Assert.Throws<ArgumentException>(() => DeepSpeed(4, 5).Validate());
        Assert.Throws<ArgumentException>(() => DeepSpeed(4, 2, factor: 0).Validate());
        Assert.Throws<ArgumentException>(() => DeepSpeed(4, 2, min: -1).Validate());
        new MoeOptions(8, 3, MoeRoutingKind.Mixtral, 1, 0, SecondExpertPolicy.Deterministic).Validate();
    }
}
