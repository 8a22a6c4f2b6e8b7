using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda.Tests;

/// <summary>The host reference the GPU parity tests trust, checked against known values on this machine.</summary>
public sealed class NaiveBackendTests
{
    private readonly NaiveBackend _b = new();

    [Theory]
    [InlineData(0.0, 0.0)]
    [InlineData(0.5, 0.5204998778130465)]
    [InlineData(1.0, 0.8427007929497149)]
    [InlineData(-2.0, -0.9953222650189527)]
    [InlineData(3.0, 0.9999779095030014)]
    public void ErfMatchesTables(double x, double expected) => Assert.Equal(expected, NaiveBackend.Erf(x), 12);

    [Fact]
    public void BicubicAtTheSameSizeIsTheIdentity()
    {
        float[] image = TestData.Random(3 * 5 * 7, 1);
        var y = Tensor.Allocate(DType.F32, 3, 5, 7);
        _b.UpsampleBicubic(Tensor.FromFloats(image, 3, 5, 7), 5, 7, y);
        TestData.Close(image, y.ToFloatArray(), 1e-6, 0, "identity resize");
    }

    [Fact]
    public void AttentionOverOneKeyReturnsItsValueAndSoftmaxRowsSumToOne()
    {
        var q = Tensor.FromFloats(TestData.Random(8, 2), 1, 8);
        var kv = Tensor.FromFloats(TestData.Random(4, 3), 1, 4);
        var y = Tensor.Allocate(DType.F32, 1, 8);
        _b.Attention(q, kv, kv, y, heads: 2, kvHeads: 1, headDim: 4, causal: true, queryStart: 0);
        var v = kv.ToFloatArray();
        Assert.Equal(v.Concat(v), y.ToFloatArray());

        var s = Tensor.Allocate(DType.F32, 3, 10);
        _b.Softmax(Tensor.FromFloats(TestData.Random(30, 4, 20f), 3, 10), s);
        for (int r = 0; r < 3; r++) Assert.Equal(1.0, s.ToFloatArray().Skip(r * 10).Take(10).Sum(), 5);
    }

    [Fact]
    public void RotaryRotatesPairsByPositionTimesFrequency()
    {
        var x = Tensor.FromFloats([1f, 0f, 0f, 0f], 1, 4); // one head of 4: pairs (0,2) and (1,3)
        _b.Rotary(x, 1, 4, 4, 10000f, startPosition: 3);
        var r = x.ToFloatArray();
        Assert.Equal(Math.Cos(3), r[0], 6);
        Assert.Equal(Math.Sin(3), r[2], 6);
        Assert.Equal(0f, r[1]);
    }

    [Fact]
    public void LayerNormNormalisesAndPatchEmbedIsAConvolution()
    {
        var y = Tensor.Allocate(DType.F32, 1, 4);
        _b.LayerNorm(Tensor.FromFloats([1f, 2f, 3f, 4f], 1, 4), Tensor.FromFloats([1f, 1f, 1f, 1f], 4), null, 0f, y);
        double scale = 1 / Math.Sqrt(1.25);
        TestData.Close([(float)(-1.5 * scale), (float)(-0.5 * scale), (float)(0.5 * scale), (float)(1.5 * scale)], y.ToFloatArray(), 1e-6, 0, "LayerNorm");

        // A 2x2 patch conv with a weight selecting channel 1, pixel (1,0) of each patch.
        var image = Tensor.FromFloats(Enumerable.Range(0, 3 * 2 * 4).Select(i => (float)i).ToArray(), 3, 2, 4);
        var weight = new float[1 * 3 * 2 * 2];
        weight[(1 * 2 + 1) * 2 + 0] = 1f;
        var p = Tensor.Allocate(DType.F32, 2, 1);
        _b.PatchEmbed(image, Tensor.FromFloats(weight, 1, 3, 2, 2), null, 2, p);
        Assert.Equal([12f, 14f], p.ToFloatArray()); // channel 1 starts at 8; row 1 adds 4; patches at x = 0, 2
    }
}
