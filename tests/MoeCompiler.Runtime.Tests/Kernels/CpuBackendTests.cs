using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.TestSupport;
using Xunit;
using static MoeCompiler.Runtime.Tests.Kernels.KernelTestUtil;

namespace MoeCompiler.Runtime.Tests.Kernels;

/// <summary>
/// Every CpuBackend operation against <see cref="ReferenceKernels"/> (double-accumulating loops), on every
/// instruction-set path this machine supports (scalar, AVX2, AVX-512 forced in turn), into NaN-poisoned outputs.
/// </summary>
public sealed class CpuBackendTests
{
    // f32 activations: the integer decode path of grouped int8 weights has its own tests (IntegerDotTests).
    private static readonly CpuBackend[] s_backends = Isas.Select(isa => new CpuBackend(2, isa) { IntegerDotDecode = false, IntegerGemmPrefill = false }).ToArray();

    public static TheoryData<int, int, int, DType, int> LinearCases()
    {
        var data = new TheoryData<int, int, int, DType, int>();
        int[][] shapes = [[1, 1, 1], [1, 7, 33], [2, 33, 7], [4, 64, 4097], [5, 64, 17], [7, 33, 7], [33, 64, 17], [3, 4097, 5], [1, 256, 4097], [65, 96, 70], [150, 300, 290], [13, 1100, 1600], [1, 5504, 9], [2, 197, 11]];
        foreach (var s in shapes)
            foreach (var dtype in new[] { DType.F32, DType.BF16, DType.F16, DType.I8 })
            {
                data.Add(s[0], s[1], s[2], dtype, 0);
                if (dtype == DType.I8 && s[1] % 32 == 0) data.Add(s[0], s[1], s[2], dtype, 32);
                if (dtype == DType.I8 && s[1] % 8 == 0 && s[1] % 16 != 0) data.Add(s[0], s[1], s[2], dtype, 8);
            }
        data.Add(1, 96, 40, DType.I8, 24);
        data.Add(9, 96, 40, DType.I8, 24);
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
            foreach (var backend in s_backends)
            {
                var actual = Poisoned(m, n);
                backend.Linear(x, backend.PrepareWeight(weight), bias, actual);
                // f32 accumulation over k products of magnitude ≤ 1.
                AssertClose(expected, actual, atol: 2e-6 * Math.Sqrt(k) + 1e-6, rtol: 1e-5,
                    $"Linear {m}x{k}x{n} {dtype}/{groupSize} bias={withBias} {backend.Name}");
            }
        }
    }

    [Fact]
    public void LinearWithEmptyInnerDimensionGivesBias()
    {
        var bias = Tensor.FromFloats([1f, 2f], 2);
        foreach (var backend in s_backends)
        {
            var y = Poisoned(3, 2);
            backend.Linear(Tensor.Allocate(DType.F32, 3, 0), Tensor.Allocate(DType.F32, 2, 0), bias, y);
            Assert.Equal([1f, 2f, 1f, 2f, 1f, 2f], y.ToFloatArray());
        }
    }

    [Fact]
    public void LinearRejectsMismatchedShapes()
    {
        var x = Tensor.Allocate(DType.F32, 2, 8);
        var w = Tensor.Allocate(DType.F32, 4, 7);
        var y = Tensor.Allocate(DType.F32, 2, 4);
        var e = Assert.Throws<ArgumentException>(() => s_backends[0].Linear(x, w, null, y));
        Assert.Contains("does not match", e.Message);
    }

    [Fact]
    public void LinearRejectsOutputOverlappingInput()
    {
        var x = Tensor.Allocate(DType.F32, 6, 8);
        var w = Tensor.Allocate(DType.F32, 8, 8);
        var e = Assert.Throws<ArgumentException>(() => s_backends[0].Linear(x, w, null, x));
        Assert.Contains("overlaps", e.Message);
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
        foreach (var backend in s_backends)
        {
            foreach (var b in new[] { bias, null })
            {
                var expected = Poisoned(rows, width);
                ReferenceKernels.LayerNorm(x, weight, b, 1e-5f, expected);
                var actual = Poisoned(rows, width);
                backend.LayerNorm(x, weight, b, 1e-5f, actual);
                AssertClose(expected, actual, 1e-5, 1e-4, "LayerNorm " + backend.Name);
            }
            {
                var expected = Poisoned(rows, width);
                ReferenceKernels.RmsNorm(x, weight, 1e-6f, expected);
                var actual = Poisoned(rows, width);
                backend.RmsNorm(x, weight, 1e-6f, actual);
                AssertClose(expected, actual, 1e-5, 1e-4, "RmsNorm " + backend.Name);
            }
            // In place (y aliases x), with a bf16 weight.
            var bf16Weight = RandomWeight(random, DType.BF16, 1, width).Reshape(width);
            var inPlace = Copy(x);
            var reference = Poisoned(rows, width);
            ReferenceKernels.LayerNorm(x, bf16Weight, bias, 1e-5f, reference);
            backend.LayerNorm(inPlace, bf16Weight, bias, 1e-5f, inPlace);
            AssertClose(reference, inPlace, 1e-5, 1e-4, "LayerNorm in place " + backend.Name);
        }
    }

    [Theory]
    [InlineData(1, 1, 64, 64, 0)]
    [InlineData(7, 4, 80, 32, 5)]
    [InlineData(33, 2, 64, 16, 600)]
    [InlineData(3, 3, 128, 128, 4000)]
    [InlineData(2, 2, 6, 2, 1)]
    public void RotaryMatchesReference(int rows, int heads, int headDim, int rotaryDims, int start)
    {
        var random = new Random(rows + heads * 7 + headDim);
        var input = RandomF32(random, 2f, rows, heads * headDim);
        var expected = Copy(input);
        ReferenceKernels.Rotary(expected, heads, headDim, rotaryDims, 10000f, start);
        foreach (var backend in s_backends)
        {
            var x = Copy(input);
            backend.Rotary(x, heads, headDim, rotaryDims, 10000f, start);
            // cos/sin are rounded to f32 once: error ≈ |x|·2⁻²⁴ per term.
            AssertClose(expected, x, 1e-6, 1e-5, "Rotary " + backend.Name);
        }
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
        if (n > 2) x.AsFloats()[1] = 30f;
        var expected = Poisoned(n);
        ReferenceKernels.Activate(x, activation, expected);
        foreach (var backend in s_backends)
        {
            var actual = Poisoned(n);
            backend.Activate(x, activation, actual);
            AssertClose(expected, actual, 1e-6, 1e-5, activation + " " + backend.Name);
            var inPlace = Copy(x);
            backend.Activate(inPlace, activation, inPlace);
            AssertClose(expected, inPlace, 1e-6, 1e-5, activation + " in place " + backend.Name);
        }
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
        foreach (var backend in s_backends)
        {
            var actual = Poisoned(n);
            backend.SwiGlu(gate, up, actual);
            AssertClose(expected, actual, 1e-6, 1e-5, "SwiGlu " + backend.Name);
        }
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
        foreach (var backend in s_backends)
        {
            var actual = Poisoned(rows, width);
            ReferenceKernels.Softmax(x, expected);
            backend.Softmax(x, actual);
            AssertClose(expected, actual, 1e-7, 1e-5, "Softmax " + backend.Name);
            ReferenceKernels.Add(x, z, expected);
            backend.Add(x, z, actual);
            AssertClose(expected, actual, 0, 0, "Add " + backend.Name);
            ReferenceKernels.Multiply(x, z, expected);
            backend.Multiply(x, z, actual);
            AssertClose(expected, actual, 0, 0, "Multiply " + backend.Name);
            ReferenceKernels.Scale(x, 0.37f, expected);
            backend.Scale(x, 0.37f, actual);
            AssertClose(expected, actual, 0, 1e-7, "Scale " + backend.Name);
        }
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
        foreach (var backend in s_backends)
        {
            var actual = Poisoned(ids.Length, 33);
            backend.Embedding(table, ids, actual);
            AssertClose(expected, actual, 0, 0, "Embedding " + backend.Name);
            Assert.Throws<ArgumentOutOfRangeException>(() => backend.Embedding(table, [50], Poisoned(1, 33)));
        }
    }

    [Theory]
    [InlineData(1, 1, 1, 1, 8, true, 0)]
    [InlineData(7, 7, 4, 2, 16, true, 0)]
    [InlineData(1, 33, 8, 2, 64, true, 32)]
    [InlineData(5, 40, 6, 3, 80, true, 35)]
    [InlineData(33, 33, 4, 4, 72, false, 0)]
    [InlineData(3, 600, 4, 1, 64, true, 597)]
    [InlineData(2, 5, 2, 2, 7, false, 0)]
    // One decoding query: the key-blocked path (blocks of 32 keys, partial softmaxes merged), at block edges and at
    // MoE-LLaVA-Qwen's real width (16 heads of 128).
    [InlineData(1, 32, 4, 4, 16, true, 31)]
    [InlineData(1, 65, 8, 2, 24, true, 64)]
    [InlineData(1, 5, 2, 2, 7, false, 0)]
    [InlineData(1, 608, 16, 16, 128, true, 607)]
    // Prefill blocks of four queries sharing each value row (AVX-512): 64-wide passes, then 16-wide, then single
    // columns (130 = 64 + 64 + 2), after a cached prefix, and with a last block of fewer than four queries.
    [InlineData(64, 96, 4, 2, 128, true, 32)]
    [InlineData(13, 41, 2, 1, 130, true, 28)]
    [InlineData(21, 21, 3, 3, 48, false, 0)]
    public void AttentionMatchesReference(int queries, int keys, int heads, int kvHeads, int headDim, bool causal, int queryStart)
    {
        var random = new Random(queries * 7 + keys * 3 + heads + headDim);
        var q = RandomF32(random, 2f, queries, heads * headDim);
        var k = RandomF32(random, 2f, keys, kvHeads * headDim);
        var v = RandomF32(random, 2f, keys, kvHeads * headDim);
        var expected = Poisoned(queries, heads * headDim);
        ReferenceKernels.Attention(q, k, v, expected, heads, kvHeads, headDim, causal, queryStart);
        foreach (var backend in s_backends)
        {
            var actual = Poisoned(queries, heads * headDim);
            backend.Attention(q, k, v, actual, heads, kvHeads, headDim, causal, queryStart);
            AssertClose(expected, actual, 2e-5, 1e-4, "Attention " + backend.Name);
        }
    }

    /// <summary>A bf16 KV cache: keys and values widened in registers; the reference reads the same bf16 values.</summary>
    [Theory]
    [InlineData(1, 1, 1, 1, 8, true, 0)]
    [InlineData(7, 7, 4, 2, 16, true, 0)]
    [InlineData(5, 40, 6, 3, 80, true, 35)]
    [InlineData(33, 33, 4, 4, 72, false, 0)]
    [InlineData(2, 5, 2, 2, 7, false, 0)]
    [InlineData(1, 97, 8, 2, 40, true, 96)]
    [InlineData(1, 608, 16, 16, 128, true, 607)]
    [InlineData(64, 96, 4, 2, 128, true, 32)]
    [InlineData(13, 41, 2, 1, 130, true, 28)]
    public void AttentionOverBf16KeysAndValuesMatchesReference(int queries, int keys, int heads, int kvHeads, int headDim, bool causal, int queryStart)
    {
        var random = new Random(queries * 5 + keys * 11 + heads + headDim);
        var q = RandomF32(random, 2f, queries, heads * headDim);
        var k = RandomWeight(random, DType.BF16, keys, kvHeads * headDim, 2f);
        var v = RandomWeight(random, DType.BF16, keys, kvHeads * headDim, 2f);
        var expected = Poisoned(queries, heads * headDim);
        ReferenceKernels.Attention(q, k, v, expected, heads, kvHeads, headDim, causal, queryStart);
        foreach (var backend in s_backends)
        {
            var actual = Poisoned(queries, heads * headDim);
            backend.Attention(q, k, v, actual, heads, kvHeads, headDim, causal, queryStart);
            AssertClose(expected, actual, 2e-5, 1e-4, "bf16 attention " + backend.Name);
        }
    }

    [Fact]
    public void AttentionRejectsMixedKeyAndValueTypes()
    {
        var random = new Random(3);
        var q = RandomF32(random, 1f, 1, 8);
        var k = RandomWeight(random, DType.BF16, 4, 8);
        var v = RandomF32(random, 1f, 4, 8);
        var e = Assert.Throws<ArgumentException>(() => s_backends[0].Attention(q, k, v, Poisoned(1, 8), 1, 1, 8, true, 3));
        Assert.Contains("bf16", e.Message);
    }

    /// <summary>Storing f32 rows into a bf16 cache rounds exactly like <see cref="NumberFormats.FloatToBF16"/> (which
    /// the PyTorch goldens pin to torch's rounding): ties to even, NaN quiet, infinities and overflow kept.</summary>
    [Fact]
    public void CopyRowsIntoBf16RoundsToNearestEven()
    {
        var random = new Random(17);
        var source = RandomF32(random, 3f, 5, 37);
        var values = source.AsFloats();
        float[] special =
        [
            BitConverter.UInt32BitsToSingle(0x3F808000), BitConverter.UInt32BitsToSingle(0x3F818000), // ties: down, up
            BitConverter.UInt32BitsToSingle(0x3F808001), float.NaN, -float.NaN, float.PositiveInfinity,
            float.NegativeInfinity, float.MaxValue, -float.MaxValue, float.Epsilon, -0f, 0f, 1e-40f,
            BitConverter.UInt32BitsToSingle(0x7F800001), BitConverter.UInt32BitsToSingle(0xFF800001),
        ];
        special.CopyTo(values[40..]);
        foreach (var backend in s_backends)
        {
            var cache = Tensor.Allocate(DType.BF16, 9, 37);
            cache.AsSpan<ushort>().Fill(0xDEAD);
            backend.CopyRows(source, 1, cache, 3, 4);
            var stored = cache.AsSpan<ushort>();
            for (int i = 0; i < stored.Length; i++)
            {
                int row = i / 37;
                ushort expected = row is >= 3 and < 7 ? NumberFormats.FloatToBF16(values[i - 2 * 37]) : (ushort)0xDEAD;
                Assert.True(expected == stored[i], $"{backend.Name} element {i}: stored 0x{stored[i]:X4}, expected 0x{expected:X4}");
            }
            Assert.Throws<ArgumentException>(() => backend.CopyRows(cache, 0, source, 0, 1));
        }
    }

    [Fact]
    public void AttentionRejectsTooFewKeysForCausalQueries()
    {
        var q = Tensor.Allocate(DType.F32, 2, 8);
        var k = Tensor.Allocate(DType.F32, 3, 8);
        var e = Assert.Throws<ArgumentException>(() => s_backends[0].Attention(q, k, k, Poisoned(2, 8), 1, 1, 8, true, 2));
        Assert.Contains("keys", e.Message);
    }

    [Fact]
    public void GatherAndScatterMatchReference()
    {
        var random = new Random(5);
        var source = RandomF32(random, 1f, 9, 33);
        int[] rows = [8, 0, 3, 3];
        float[] weights = [0.5f, -1f, 0.25f, 2f];
        var expected = Poisoned(4, 33);
        ReferenceKernels.GatherRows(source, rows, expected);
        var destinationStart = RandomF32(random, 1f, 9, 33);
        var destinationExpected = Copy(destinationStart);
        ReferenceKernels.ScatterAddRows(expected, rows, weights, destinationExpected);
        foreach (var backend in s_backends)
        {
            var actual = Poisoned(4, 33);
            backend.GatherRows(source, rows, actual);
            AssertClose(expected, actual, 0, 0, "GatherRows " + backend.Name);
            var destinationActual = Copy(destinationStart);
            backend.ScatterAddRows(actual, rows, weights, destinationActual);
            AssertClose(destinationExpected, destinationActual, 1e-6, 1e-6, "ScatterAddRows " + backend.Name);
        }
    }

    [Theory]
    [InlineData(DType.F32, 14, 28, 42, 5)]
    [InlineData(DType.BF16, 4, 8, 12, 7)]
    [InlineData(DType.F16, 2, 6, 2, 1)]
    [InlineData(DType.F32, 3, 7, 8, 33)]
    public void PatchEmbedMatchesReference(DType dtype, int patch, int height, int width, int outChannels)
    {
        var random = new Random(patch);
        var image = RandomF32(random, 2f, 3, height, width);
        var weight = RandomWeight(random, dtype, outChannels, 3 * patch * patch).Reshape(outChannels, 3, patch, patch);
        var bias = RandomF32(random, 1f, outChannels);
        int n = height / patch * (width / patch);
        var expected = Poisoned(n, outChannels);
        ReferenceKernels.PatchEmbed(image, weight, bias, patch, expected);
        foreach (var backend in s_backends)
        {
            var actual = Poisoned(n, outChannels);
            backend.PatchEmbed(image, weight, bias, patch, actual);
            AssertClose(expected, actual, 1e-5, 1e-5, "PatchEmbed " + backend.Name);
        }
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
        foreach (var backend in s_backends)
        {
            var actual = Poisoned(outputs, channels);
            backend.AvgPool2d(x, height, width, kernel, actual);
            AssertClose(expected, actual, 1e-6, 1e-6, "AvgPool2d " + backend.Name);
        }
    }

    [Theory]
    [InlineData(1, 1, 1, 3, 3)]
    [InlineData(3, 7, 5, 21, 15)]
    [InlineData(2, 8, 8, 4, 4)]
    [InlineData(1, 5, 9, 11, 2)]
    [InlineData(3, 33, 33, 99, 99)]
    public void BicubicMatchesReference(int channels, int height, int width, int outHeight, int outWidth)
    {
        var random = new Random(height * outHeight + width);
        var x = RandomF32(random, 2f, channels, height, width);
        var expected = Poisoned(channels, outHeight, outWidth);
        ReferenceKernels.UpsampleBicubic(x, outHeight, outWidth, expected);
        foreach (var backend in s_backends)
        {
            var actual = Poisoned(channels, outHeight, outWidth);
            backend.UpsampleBicubic(x, outHeight, outWidth, actual);
            AssertClose(expected, actual, 1e-5, 1e-5, "UpsampleBicubic " + backend.Name);
        }
    }

    /// <summary>A blocked product with every edge at once: rows not a multiple of the 12-row slice, two column blocks
    /// (1536 weight rows each) with a last panel not a multiple of 32, two depth blocks (1024) with a short second one,
    /// and few enough row slices that 2 and 3 threads split the packed panels between tasks: matches the naive
    /// reference, and is bitwise the same for 1, 2 and 3 threads.</summary>
    [Theory]
    [InlineData(61, 1100, 1601, DType.BF16)]
    [InlineData(25, 1030, 1545, DType.F32)]
    [InlineData(300, 700, 515, DType.I8)]
    public void BlockedLinearWithSplitPanelsMatchesReferenceForAnyThreadCount(int m, int k, int n, DType dtype)
    {
        var random = new Random(m + k + n);
        var x = RandomF32(random, 1f, m, k);
        var weight = RandomWeight(random, dtype, n, k);
        var bias = RandomF32(random, 1f, n);
        var expected = Poisoned(m, n);
        ReferenceKernels.Linear(x, weight, bias, expected);
        foreach (var isa in Isas)
        {
            Tensor? first = null;
            foreach (int threads in new[] { 1, 2, 3 })
            {
                using var backend = new CpuBackend(threads, isa);
                var actual = Poisoned(m, n);
                backend.Linear(x, backend.PrepareWeight(weight), bias, actual);
                AssertClose(expected, actual, atol: 2e-6 * Math.Sqrt(k) + 1e-6, rtol: 1e-5, $"Linear {m}x{k}x{n} {dtype} {isa} {threads} threads");
                if (first is null) first = actual;
                else AssertBitwiseEqual(first, actual, $"Linear {m}x{k}x{n} {dtype} {isa} {threads} threads vs 1");
            }
        }
    }

    [Fact]
    public void ResultsAreBitwiseIndependentOfThreadCount()
    {
        var random = new Random(11);
        foreach (var isa in Isas)
        {
            using var single = new CpuBackend(1, isa);
            using var dual = new CpuBackend(2, isa);
            using var triple = new CpuBackend(3, isa);
            foreach (int m in new[] { 1, 3, 37, 150 })
            {
                var x = RandomF32(random, 1f, m, 300);
                foreach (var dtype in new[] { DType.F32, DType.BF16, DType.F16, DType.I8 })
                {
                    var w = RandomWeight(random, dtype, 531, 300);
                    var bias = RandomF32(random, 1f, 531);
                    var a = Poisoned(m, 531);
                    var b = Poisoned(m, 531);
                    var c = Poisoned(m, 531);
                    single.Linear(x, w, bias, a);
                    dual.Linear(x, w, bias, b);
                    triple.Linear(x, w, bias, c);
                    AssertBitwiseEqual(a, b, $"Linear {m} {dtype} {isa}");
                    AssertBitwiseEqual(a, c, $"Linear {m} {dtype} {isa}");
                }
            }
            var q = RandomF32(random, 1f, 9, 4 * 32);
            var k = RandomF32(random, 1f, 40, 2 * 32);
            var v = RandomF32(random, 1f, 40, 2 * 32);
            var ya = Poisoned(9, 128);
            var yb = Poisoned(9, 128);
            single.Attention(q, k, v, ya, 4, 2, 32, true, 31);
            dual.Attention(q, k, v, yb, 4, 2, 32, true, 31);
            AssertBitwiseEqual(ya, yb, "Attention " + isa);
            foreach (var dtype in new[] { DType.F32, DType.BF16 })
            {
                // One decoding query over 200 keys: seven key blocks split between the workers, merged in order.
                var kd = RandomWeight(random, dtype, 200, 2 * 32);
                var vd = RandomWeight(random, dtype, 200, 2 * 32);
                var qd = RandomF32(random, 1f, 1, 4 * 32);
                var d1 = Poisoned(1, 128);
                var d2 = Poisoned(1, 128);
                var d3 = Poisoned(1, 128);
                single.Attention(qd, kd, vd, d1, 4, 2, 32, true, 199);
                dual.Attention(qd, kd, vd, d2, 4, 2, 32, true, 199);
                triple.Attention(qd, kd, vd, d3, 4, 2, 32, true, 199);
                AssertBitwiseEqual(d1, d2, $"decode attention {dtype} {isa}");
                AssertBitwiseEqual(d1, d3, $"decode attention {dtype} {isa}");
            }
            var big = RandomF32(random, 4f, 70, 999);
            var ln1 = Poisoned(70, 999);
            var ln2 = Poisoned(70, 999);
            var weight = RandomF32(random, 1f, 999);
            single.LayerNorm(big, weight, null, 1e-5f, ln1);
            dual.LayerNorm(big, weight, null, 1e-5f, ln2);
            AssertBitwiseEqual(ln1, ln2, "LayerNorm " + isa);
            single.Activate(big, Activation.GeluErf, ln1);
            dual.Activate(big, Activation.GeluErf, ln2);
            AssertBitwiseEqual(ln1, ln2, "GeluErf " + isa);
        }
    }
}
