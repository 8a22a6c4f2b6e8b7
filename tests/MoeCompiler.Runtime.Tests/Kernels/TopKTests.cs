using MoeCompiler.Runtime.Kernels;
using Xunit;

namespace MoeCompiler.Runtime.Tests.Kernels;

public sealed class TopKTests
{
    [Fact]
    public void SelectsLargestFirstWithLowerIndexWinningTies()
    {
        float[] scores = [0.1f, 0.7f, 0.3f, 0.7f, -2f];
        var indices = new int[3];
        var values = new float[3];
        TopK.Select(scores, 3, indices, values);
        Assert.Equal([1, 3, 2], indices);
        Assert.Equal([0.7f, 0.7f, 0.3f], values);
    }

    [Fact]
    public void MatchesSortingOnRandomRows()
    {
        var random = new Random(3);
        for (int trial = 0; trial < 200; trial++)
        {
            int n = random.Next(1, 70), k = random.Next(1, n + 1);
            var scores = new float[n];
            for (int i = 0; i < n; i++) scores[i] = random.Next(-5, 5) * 0.5f; // many ties
            var expected = Enumerable.Range(0, n).OrderByDescending(i => scores[i]).ThenBy(i => i).Take(k).ToArray();
            var indices = new int[k];
            TopK.Select(scores, k, indices);
            Assert.Equal(expected, indices);
        }
    }

    [Fact]
    public void RejectsBadArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => TopK.Select([1f, 2f], 3, new int[3]));
        Assert.Throws<ArgumentException>(() => TopK.Select([1f, 2f], 2, new int[1]));
    }

    [Fact]
    public void NaNScoresRankBelowEveryNumber()
    {
        var indices = new int[3];
        TopK.Select([float.NaN, -1f, float.NaN, 5f], 3, indices);
        Assert.Equal([3, 1, 0], indices);
    }
}
