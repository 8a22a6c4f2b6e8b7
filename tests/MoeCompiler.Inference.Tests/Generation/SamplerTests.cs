using MoeCompiler.Runtime.Generation;

namespace MoeCompiler.Inference.Tests.Generation;

public class SamplerTests
{
    [Fact]
    public void Greedy_PicksTheLargestLogitBelowTheTokenizerSize()
    {
        var sampler = new Sampler(SamplingOptions.Greedy, tokenizerSize: 4);
        // id 5 is the largest overall but lies beyond the tokenizer (a padded lm_head row).
        Assert.Equal(2, sampler.Next([0.1f, -3f, 2.5f, 1f, 0f, 99f]));
    }

    [Fact]
    public void Greedy_TieGoesToTheLowestId()
    {
        var sampler = new Sampler(SamplingOptions.Greedy, 4);
        Assert.Equal(1, sampler.Next([0f, 2f, 2f, 1f]));
    }

    [Fact]
    public void RepetitionPenalty_DividesPositiveAndMultipliesNegativeLogitsOfSeenIds()
    {
        var options = new SamplingOptions { RepetitionPenalty = 1.2f };
        var sampler = new Sampler(options, 4);
        // 2 / 1.2 = 1.67 < 1.9: the repeated id 0 loses to id 1.
        Assert.Equal(0, sampler.Next([2f, 1.9f, -5f, -5f]));
        Assert.Equal(1, sampler.Next([2f, 1.9f, -5f, -5f], [0, 0, -200]));
        // Negative logits get more negative: -1·1.2 = -1.2 < -1.05.
        Assert.Equal(2, sampler.Next([-9f, -9f, -1f, -1.05f]));
        Assert.Equal(3, sampler.Next([-9f, -9f, -1f, -1.05f], [2]));
    }

    [Fact]
    public void Sampling_IsReproducibleForASeedAndDiffersAcrossSeeds()
    {
        float[] logits = [1f, 1.2f, 0.8f, 1.1f, 0.9f, 1f, 1.05f, 0.95f];
        int[] Draw(ulong seed)
        {
            var s = new Sampler(new SamplingOptions { Temperature = 1f, Seed = seed }, logits.Length);
            return Enumerable.Range(0, 64).Select(_ => s.Next(logits)).ToArray();
        }
        Assert.Equal(Draw(7), Draw(7));
        Assert.NotEqual(Draw(7), Draw(8));
    }

    [Fact]
    public void Sampling_FollowsTheTemperatureScaledSoftmax()
    {
        float[] logits = [0f, 1f, 2f];
        const float temperature = 2f;
        var sampler = new Sampler(new SamplingOptions { Temperature = temperature, Seed = 3 }, 3);
        const int draws = 20000;
        var counts = new int[3];
        for (int i = 0; i < draws; i++) counts[sampler.Next(logits)]++;
        double z = logits.Sum(l => Math.Exp(l / temperature));
        for (int i = 0; i < 3; i++)
        {
            double p = Math.Exp(logits[i] / temperature) / z;
            double sigma = Math.Sqrt(p * (1 - p) / draws);
            Assert.InRange(counts[i] / (double)draws, p - 5 * sigma, p + 5 * sigma);
        }
    }

    [Fact]
    public void TopK_OnlyReturnsTheKBest()
    {
        float[] logits = [0f, 3f, 1f, 2.9f, 2f, -1f];
        var sampler = new Sampler(new SamplingOptions { Temperature = 5f, TopK = 2, Seed = 11 }, logits.Length);
        var seen = Enumerable.Range(0, 500).Select(_ => sampler.Next(logits)).ToHashSet();
        Assert.Equal(new HashSet<int> { 1, 3 }, seen);
        var one = new Sampler(new SamplingOptions { Temperature = 5f, TopK = 1 }, logits.Length);
        Assert.All(Enumerable.Range(0, 50), _ => Assert.Equal(1, one.Next(logits)));
    }

    [Fact]
    public void TopP_KeepsTheSmallestPrefixReachingP()
    {
        // Probabilities 0.5, 0.3, 0.2 (temperature 1).
        float[] logits = [MathF.Log(0.5f), MathF.Log(0.3f), MathF.Log(0.2f)];
        var wide = new Sampler(new SamplingOptions { Temperature = 1f, TopP = 0.7f, Seed = 5 }, 3);
        var seenWide = Enumerable.Range(0, 400).Select(_ => wide.Next(logits)).ToHashSet();
        Assert.Equal(new HashSet<int> { 0, 1 }, seenWide);
        var narrow = new Sampler(new SamplingOptions { Temperature = 1f, TopP = 0.45f, Seed = 5 }, 3);
        Assert.All(Enumerable.Range(0, 100), _ => Assert.Equal(0, narrow.Next(logits)));
    }

    [Fact]
    public void Sampling_NeverReturnsIdsBeyondTheTokenizer()
    {
        float[] logits = [0f, 0f, 0f, 50f, 50f];
        var sampler = new Sampler(new SamplingOptions { Temperature = 1f }, tokenizerSize: 3);
        Assert.All(Enumerable.Range(0, 200), _ => Assert.InRange(sampler.Next(logits), 0, 2));
    }

    [Theory]
    [InlineData(-0.1f, 1f, 0, 1f)]
    [InlineData(float.NaN, 1f, 0, 1f)]
    [InlineData(1f, 0f, 0, 1f)]
    [InlineData(1f, 1.5f, 0, 1f)]
    [InlineData(1f, 1f, -1, 1f)]
    [InlineData(1f, 1f, 0, 0f)]
    public void InvalidSettings_AreRejectedWithAClearMessage(float temperature, float topP, int topK, float penalty)
    {
        var options = new SamplingOptions { Temperature = temperature, TopP = topP, TopK = topK, RepetitionPenalty = penalty };
        var e = Assert.Throws<ArgumentException>(() => new Sampler(options, 4));
        Assert.Matches("temperature|top-p|top-k|repetition penalty", e.Message);
    }

    [Fact]
    public void ShortLogitsAndNaN_AreErrors()
    {
        var sampler = new Sampler(SamplingOptions.Greedy, 4);
        Assert.Throws<ArgumentException>(() => sampler.Next([1f, 2f]));
        Assert.Throws<InvalidOperationException>(() => sampler.Next([1f, float.NaN, 0f, 0f]));
    }
}

public class StopStringMatcherTests
{
    [Fact]
    public void HoldsBackAPossibleStopAndCutsAtIt()
    {
        var m = new StopStringMatcher(["</s>", "USER:"]);
        Assert.Equal("Hello", m.Push("Hello"));
        Assert.Equal(" wor", m.Push(" wor<"));            // "<" might start "</s>"
        Assert.Equal("", m.Push("/"));
        Assert.Equal("", m.Push("s>tail"));
        Assert.True(m.Stopped);
        Assert.Equal("", m.Flush());
    }

    [Fact]
    public void ReleasesHeldTextWhenItDoesNotBecomeAStop()
    {
        var m = new StopStringMatcher(["USER:"]);
        Assert.Equal("a ", m.Push("a US"));
        Assert.Equal("USx", m.Push("x"));
        Assert.Equal("", m.Push("US"));
        Assert.Equal("US", m.Flush());
        Assert.False(m.Stopped);
    }

    [Fact]
    public void EarliestStopWins()
    {
        var m = new StopStringMatcher(["bc", "ab"]);
        Assert.Equal("x", m.Push("xabc"));
        Assert.True(m.Stopped);
    }
}
