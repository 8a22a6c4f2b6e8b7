using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using Xunit;
using static MoeCompiler.Runtime.Tests.Kernels.KernelTestUtil;

namespace MoeCompiler.Runtime.Tests.Kernels;

/// <summary>Every CpuBackend operation against <see cref="ReferenceKernels"/> (double-accumulating loops).</summary>
public sealed class CpuBackendTests : IDisposable
{
    private readonly CpuBackend _backend = new(threads: 2);

    public void Dispose() => _backend.Dispose();

    public static TheoryData<int, int, int, DType, int> LinearCases()
    {
        var data = new TheoryData<int, int, int, DType, int>();
        int[][] shapes = [[1, 1, 1], [1, 7, 33], [7, 33, 7], [33, 64, 17], [3, 4097, 5], [1, 256, 4097], [65, 96, 70]];
        foreach (var s in shapes)
            foreach (var dtype in new[] { DType.F32, DType.BF16, DType.F16, DType.I8 })
            {
                data.Add(s[0], s[1], s[2], dtype, 0);
                if (dtype == DType.I8 && s[1] % 32 == 0) data.Add(s[0], s[1], s[2], dtype, 32);
            }
        return data;
    }

    [Theory]
    [MemberData(nameof(LinearCases))]
    public void LinearMatchesReference(int m, int k, int n, DType dtype, int groupSize)
    {
        var random = new Random(m * 1000003 + k * 1009 + n);
        var x = RandomF32(random, 1f, m, k);
        var weight = RandomWeight(random, dtype, n, k, groupSize: groupSize);
        foreach (bool withBias in new[] { false, true })
        {
            var bias = withBias ? RandomF32(random, 1f, n) : null;
            var expected = Poisoned(m, n);
            ReferenceKernels.Linear(x, weight, bias, expected);
            var actual = Poisoned(m, n);
            _backend.Linear(x, _backend.PrepareWeight(weight), bias, actual);
            // f32 accumulation over k products of magnitude ≤ 1.
            AssertClose(expected, actual, atol: 2e-6 * Math.Sqrt(k) + 1e-6, rtol: 1e-5, $"Linear {m}x{k}x{n} {dtype}/{groupSize} bias={withBias}");
        }
    }

    [Fact]
    public void LinearRejectsMismatchedShapes()
    {
        var x = Tensor.Allocate(DType.F32, 2, 8);
        var w = Tensor.Allocate(DType.F32, 4, 7);
        var y = Tensor.Allocate(DType.F32, 2, 4);
        var e = Assert.Throws<ArgumentException>(() => _backend.Linear(x, w, null, y));
        Assert.Contains("does not match", e.Message);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 7)]
    [InlineData(5, 33)]
    [InlineData(2, 4097)]
    public void NormsMatchReference(int rows, int width)
    {
        var random = new Random(rows * 31 + width);
        var x = RandomF32(random, 3f, rows, width);
        for (int i = 0; i < width; i++) x.AsFloats()[i] += 5f; // an offset mean exercises LayerNorm's centring
        var weight = RandomF32(random, 2f, width);
        var bias = RandomF32(random, 1f, width);
        foreach (var b in new[] { bias, null })
        {
            var expected = Poisoned(rows, width);
            ReferenceKernels.LayerNorm(x, weight, b, 1e-5f, expected);
            var actual = Poisoned(rows, width);
            _backend.LayerNorm(x, weight, b, 1e-5f, actual);
            AssertClose(expected, actual, 1e-5, 1e-4, "LayerNorm");
        }
        {
            var expected = Poisoned(rows, width);
            ReferenceKernels.RmsNorm(x, weight, 1e-6f, expected);
            var actual = Poisoned(rows, width);
            _backend.RmsNorm(x, weight, 1e-6f, actual);
            AssertClose(expected, actual, 1e-5, 1e-4, "RmsNorm");
        }
        // In place (y aliases x), with a bf16 weight.
        var bf16Weight = RandomWeight(random, DType.BF16, 1, width).Reshape(width);
        var inPlace = Copy(x);
        var reference = Poisoned(rows, width);
        ReferenceKernels.LayerNorm(x, bf16Weight, bias, 1e-5f, reference);
        _backend.LayerNorm(inPlace, bf16Weight, bias, 1e-5f, inPlace);
        AssertClose(reference, inPlace, 1e-5, 1e-4, "LayerNorm in place");
    }

    [Theory]
    [InlineData(1, 1, 64, 64, 0)]
    [InlineData(7, 4, 80, 32, 5)]
    [InlineData(33, 2, 64, 16, 600)]
    [InlineData(3, 3, 128, 128, 4000)]
    public void RotaryMatchesReference(int rows, int heads, int headDim, int rotaryDims, int start)
    {
        var random = new Random(rows + heads * 7 + headDim);
        var x = RandomF32(random, 2f, rows, heads * headDim);
        var expected = Copy(x);
        ReferenceKernels.Rotary(expected, heads, headDim, rotaryDims, 10000f, start);
        _backend.Rotary(x, heads, headDim, rotaryDims, 10000f, start);
        // cos/sin are rounded to f32 once: error ≈ |x|·2⁻²⁴ per term.
        AssertClose(expected, x, 1e-6, 1e-5, "Rotary");
    }

    public static TheoryData<Activation, int> ActivationCases()
    {
        var data = new TheoryData<Activation, int>();
        foreach (var a in Enum.GetValues<Activation>())
            foreach (int n in new[] { 1, 7, 33, 4097 }) data.Add(a, n);
        return data;
    }

    [Theory]
    [MemberData(nameof(ActivationCases))]
    public void ActivationsMatchReference(Activation activation, int n)
    {
        var random = new Random(n + (int)activation);
        var x = RandomF32(random, 8f, n);
        x.AsFloats()[0] = n > 1 ? -30f : 0f;
        var expected = Poisoned(n);
        ReferenceKernels.Activate(x, activation, expected);
        var actual = Poisoned(n);
        _backend.Activate(x, activation, actual);
        AssertClose(expected, actual, 1e-6, 1e-5, activation.ToString());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(4097)]
    public void SwiGluMatchesReference(int n)
    {
        var random = new Random(n);
        var gate = RandomF32(random, 8f, n);
        var up = RandomF32(random, 3f, n);
        var expected = Poisoned(n);
        ReferenceKernels.SwiGlu(gate, up, expected);
        var actual = Poisoned(n);
        _backend.SwiGlu(gate, up, actual);
        AssertClose(expected, actual, 1e-6, 1e-5, "SwiGlu");
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 7)]
    [InlineData(2, 33)]
    [InlineData(2, 4097)]
    public void SoftmaxAndElementwiseMatchReference(int rows, int width)
    {
        var random = new Random(rows * 13 + width);
        var x = RandomF32(random, 20f, rows, width);
        var z = RandomF32(random, 2f, rows, width);
        var expected = Poisoned(rows, width);
        var actual = Poisoned(rows, width);
        ReferenceKernels.Softmax(x, expected);
        _backend.Softmax(x, actual);
        AssertClose(expected, actual, 1e-7, 1e-5, "Softmax");
        ReferenceKernels.Add(x, z, expected);
        _backend.Add(x, z, actual);
        AssertClose(expected, actual, 0, 0, "Add");
        ReferenceKernels.Multiply(x, z, expected);
        _backend.Multiply(x, z, actual);
        AssertClose(expected, actual, 0, 0, "Multiply");
        ReferenceKernels.Scale(x, 0.37f, expected);
        _backend.Scale(x, 0.37f, actual);
        AssertClose(expected, actual, 0, 1e-7, "Scale");
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    [InlineData(DType.I8)]
    public void EmbeddingMatchesReference(DType dtype)
    {
        var random = new Random((int)dtype);
        var table = RandomWeight(random, dtype, 50, 33);
        int[] ids = [0, 49, 7, 7, 13];
        var expected = Poisoned(ids.Length, 33);
        ReferenceKernels.Embedding(table, ids, expected);
        var actual = Poisoned(ids.Length, 33);
        _backend.Embedding(table, ids, actual);
        AssertClose(expected, actual, 0, 0, "Embedding");
        Assert.Throws<ArgumentOutOfRangeException>(() => _backend.Embedding(table, [50], Poisoned(1, 33)));
    }

    [Theory]
    [InlineData(1, 1, 1, 1, 8, true, 0)]
    [InlineData(7, 7, 4, 2, 16, true, 0)]
    [InlineData(1, 33, 8, 2, 64, true, 32)]
    [InlineData(5, 40, 6, 3, 80, true, 35)]
    [InlineData(33, 33, 4, 4, 72, false, 0)]
    [InlineData(3, 600, 4, 1, 64, true, 597)]
    public void AttentionMatchesReference(int queries, int keys, int heads, int kvHeads, int headDim, bool causal, int queryStart)
    {
        var random = new Random(queries * 7 + keys * 3 + heads + headDim);
        var q = RandomF32(random, 2f, queries, heads * headDim);
        var k = RandomF32(random, 2f, keys, kvHeads * headDim);
        var v = RandomF32(random, 2f, keys, kvHeads * headDim);
        var expected = Poisoned(queries, heads * headDim);
        ReferenceKernels.Attention(q, k, v, expected, heads, kvHeads, headDim, causal, queryStart);
        var actual = Poisoned(queries, heads * headDim);
        _backend.Attention(q, k, v, actual, heads, kvHeads, headDim, causal, queryStart);
        AssertClose(expected, actual, 2e-5, 1e-4, "Attention");
    }

    [Fact]
    public void GatherAndScatterMatchReference()
    {
        var random = new Random(5);
        var source = RandomF32(random, 1f, 9, 33);
        int[] rows = [8, 0, 3, 3];
        var expected = Poisoned(4, 33);
        var actual = Poisoned(4, 33);
        ReferenceKernels.GatherRows(source, rows, expected);
        _backend.GatherRows(source, rows, actual);
        AssertClose(expected, actual, 0, 0, "GatherRows");

        float[] weights = [0.5f, -1f, 0.25f, 2f];
        var destinationExpected = RandomF32(random, 1f, 9, 33);
        var destinationActual = Copy(destinationExpected);
        ReferenceKernels.ScatterAddRows(actual, rows, weights, destinationExpected);
        _backend.ScatterAddRows(actual, rows, weights, destinationActual);
        AssertClose(destinationExpected, destinationActual, 1e-6, 1e-6, "ScatterAddRows");
    }

    [Theory]
    [InlineData(DType.F32, 14, 28, 42, 5)]
    [InlineData(DType.BF16, 4, 8, 12, 7)]
    [InlineData(DType.F16, 2, 6, 2, 1)]
    public void PatchEmbedMatchesReference(DType dtype, int patch, int height, int width, int outChannels)
    {
        var random = new Random(patch);
        var image = RandomF32(random, 2f, 3, height, width);
        var weight = RandomWeight(random, dtype, outChannels, 3 * patch * patch).Reshape(outChannels, 3, patch, patch);
        var bias = RandomF32(random, 1f, outChannels);
        int n = height / patch * (width / patch);
        var expected = Poisoned(n, outChannels);
        ReferenceKernels.PatchEmbed(image, weight, bias, patch, expected);
        var actual = Poisoned(n, outChannels);
        _backend.PatchEmbed(image, weight, bias, patch, actual);
        AssertClose(expected, actual, 1e-5, 1e-5, "PatchEmbed");
    }

    [Theory]
    [InlineData(4, 4, 2, 1)]
    [InlineData(24, 24, 2, 33)]
    [InlineData(7, 7, 3, 5)]
    public void AvgPoolMatchesReference(int height, int width, int kernel, int channels)
    {
        var random = new Random(height * kernel + channels);
        var x = RandomF32(random, 3f, height * width, channels);
        int outputs = height / kernel * (width / kernel);
        var expected = Poisoned(outputs, channels);
        ReferenceKernels.AvgPool2d(x, height, width, kernel, expected);
        var actual = Poisoned(outputs, channels);
        _backend.AvgPool2d(x, height, width, kernel, actual);
        AssertClose(expected, actual, 1e-6, 1e-6, "AvgPool2d");
    }

    [Theory]
    [InlineData(1, 1, 1, 3, 3)]
    [InlineData(3, 7, 5, 21, 15)]
    [InlineData(2, 8, 8, 4, 4)]
    [InlineData(1, 5, 9, 11, 2)]
    public void BicubicMatchesReference(int channels, int height, int width, int outHeight, int outWidth)
    {
        var random = new Random(height * outHeight + width);
        var x = RandomF32(random, 2f, channels, height, width);
        var expected = Poisoned(channels, outHeight, outWidth);
        ReferenceKernels.UpsampleBicubic(x, outHeight, outWidth, expected);
        var actual = Poisoned(channels, outHeight, outWidth);
        _backend.UpsampleBicubic(x, outHeight, outWidth, actual);
        AssertClose(expected, actual, 1e-5, 1e-5, "UpsampleBicubic");
    }

    [Fact]
    public void ResultsAreBitwiseIndependentOfThreadCount()
    {
        using var single = new CpuBackend(threads: 1);
        var random = new Random(11);
        var x = RandomF32(random, 1f, 37, 300);
        foreach (var dtype in new[] { DType.F32, DType.BF16, DType.I8 })
        {
            var w = RandomWeight(random, dtype, 131, 300);
            var a = Poisoned(37, 131);
            var b = Poisoned(37, 131);
            single.Linear(x, w, null, a);
            _backend.Linear(x, w, null, b);
            AssertBitwiseEqual(a, b, $"Linear {dtype}");
        }
        var q = RandomF32(random, 1f, 9, 4 * 32);
        var k = RandomF32(random, 1f, 40, 2 * 32);
        var v = RandomF32(random, 1f, 40, 2 * 32);
        var ya = Poisoned(9, 128);
        var yb = Poisoned(9, 128);
        single.Attention(q, k, v, ya, 4, 2, 32, true, 31);
        _backend.Attention(q, k, v, yb, 4, 2, 32, true, 31);
        AssertBitwiseEqual(ya, yb, "Attention");
    }
}
