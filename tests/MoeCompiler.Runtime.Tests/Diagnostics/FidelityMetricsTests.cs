using MoeCompiler.Runtime.Diagnostics;
using MoeCompiler.Runtime.Modules;
using Xunit;

namespace MoeCompiler.Runtime.Tests.Diagnostics;

public sealed class FidelityMetricsTests
{
    [Fact]
    public void MetricsOfHandWorkedDistributions()
    {
        // Row 0: p = (1/2, 1/2), q = (3/4, 1/4): KL = ½ ln(4/3); both pick token 0 (ties go to the first).
        // Row 1: p = softmax(2, 0), q = softmax(0, 2): KL = (e² − 1)/(e² + 1) · 4 ... computed below; top-1 differs.
        float[] reference = [0, 0, 2, 0];
        float[] run = [MathF.Log(3), 0, 0, 2];
        var records = (int[] experts) => new List<RoutingRecord> { new(0, RoutingSites.Llm, 1, 0, 2, 2, 4, experts, new float[4], new bool[2]) };
        var metrics = FidelityMetrics.Compare(reference, run, vocab: 2, records([0, 1, 2, 3]), records([1, 0, 3, 1]));
        double p = Math.Exp(2) / (Math.Exp(2) + 1);
        double klRow1 = p * Math.Log(p / (1 - p)) + (1 - p) * Math.Log((1 - p) / p);
        Assert.Equal(2, metrics.Positions);
        Assert.Equal(0.5, metrics.Top1Agreement);
        Assert.Equal((0.5 * Math.Log(4.0 / 3) + klRow1) / 2, metrics.MeanKl, 6);
        Assert.Equal(1.0, metrics.MaxRelativeLogitError, 6); // |2 − 0| / max |reference| = 2 / 2
        // Token 0 chose {0, 1} both times (order does not matter); token 1 chose {2, 3} then {3, 1}.
        Assert.Equal(("llm", 1, 0.5), Assert.Single(metrics.Routing));
        // Row 0 is a tie (margin 0): not decisive; row 1 is.
        Assert.Equal(1, metrics.DecisivePositions);
        Assert.Equal(0.0, metrics.DecisiveTop1Agreement);
    }
}
