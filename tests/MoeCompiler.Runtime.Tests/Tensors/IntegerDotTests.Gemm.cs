using System.Runtime.Intrinsics.X86;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using Xunit;
using static MoeCompiler.Runtime.Tests.Kernels.KernelTestUtil;

namespace MoeCompiler.Runtime.Tests.Tensors;

/// <summary>
/// The integer prefill GEMM (<see cref="CpuBackend.IntegerGemmPrefill"/>, Gemm.IntegerGemm.cs): more than 4 activation
/// rows against int8 / q4 weights. Checked against the naive integer product, bit for bit against the decode path's
/// scalar integer kernel run one row at a time, and across 1–3 threads, on shapes with M not a multiple of the 4-row
/// tile, N not a multiple of the 16-column panel, and N across the 1024-column block.
/// </summary>
public sealed unsafe partial class IntegerDotTests
{
    public static TheoryData<QuantizationType, int, int, int> GemmCases()
    {
        var data = new TheoryData<QuantizationType, int, int, int>();
        int[][] shapes = [[5, 32, 1], [6, 96, 33], [13, 288, 17], [9, 4128, 9], [23, 2080, 131], [41, 160, 1040], [8, 64, 16]];
        foreach (var type in new[] { QuantizationType.Int8, QuantizationType.Q4 })
            foreach (var s in shapes) data.Add(type, s[0], s[1], s[2]);
        return data;
    }

    [Theory]
    [MemberData(nameof(GemmCases))]
    public void IntegerGemmMatchesTheNaiveProductAndTheScalarDecodeKernelOnEveryThreadCount(QuantizationType type, int m, int k, int n)
    {
        if (!AvxVnni.IsSupported) return; // the integer GEMM needs AvxVnni; without it Linear keeps the f32 GEMM
        var random = new Random(m * 7919 + k * 31 + n + 5);
        var x = RandomF32(random, 1f, m, k);
        var weight = WeightQuantizer.Quantize(RandomF32(random, 0.05f, n, k), type);
        var bias = RandomF32(random, 1f, n);
        var expected = NaiveProduct(x.ToFloatArray(), m, k, weight, type, out var magnitude);
        var b = bias.ToFloatArray();

        // The decode path's scalar kernel, one activation row at a time.
        var decode = new float[m * n];
        using (var scalar = new CpuBackend(1, KernelIsa.Scalar) { IntegerDotDecode = true })
        {
            var xs = x.ToFloatArray();
            for (int i = 0; i < m; i++)
            {
                var y1 = Poisoned(1, n);
                scalar.Linear(Tensor.FromFloats(xs.AsSpan(i * k, k).ToArray(), 1, k), weight, bias, y1);
                y1.ToFloatArray().CopyTo(decode, i * n);
            }
        }

        foreach (var isa in Isas.Where(i => i != KernelIsa.Scalar))
            foreach (int threads in new[] { 1, 2, 3 })
            {
                using var backend = new CpuBackend(threads, isa) { IntegerGemmPrefill = true, Vnni = true };
                var y = Poisoned(m, n);
                backend.Linear(x, backend.PrepareLinearWeight(weight), bias, y);
                var actual = y.ToFloatArray();
                for (int i = 0; i < actual.Length; i++)
                {
                    Assert.True(BitConverter.SingleToInt32Bits(decode[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                        $"{type} {m}x{k}x{n} {isa} threads={threads} element {i}: decode kernel {decode[i]:R}, GEMM {actual[i]:R}");
                    double e = expected[i] + b[i % n];
                    double tolerance = 2e-6 * (magnitude[i] + Math.Abs(b[i % n])) + 1e-30;
                    Assert.True(Math.Abs(actual[i] - e) <= tolerance, $"{type} {m}x{k}x{n} {isa} threads={threads} element {i}: expected {e:R}, got {actual[i]:R}");
                }
            }
    }

    /// <summary>Off (or without AvxVnni), prefill keeps the dequantise-to-f32 GEMM: close to the f32 product of the
    /// dequantised weights, and not the integer path's numbers.</summary>
    [Fact]
    public void IntegerGemmOffKeepsTheF32Gemm()
    {
        var random = new Random(77);
        int m = 7, k = 96, n = 20;
        var x = RandomF32(random, 1f, m, k);
        var weight = WeightQuantizer.Quantize(RandomF32(random, 0.05f, n, k), QuantizationType.Int8);
        using var off = new CpuBackend(2) { IntegerGemmPrefill = false };
        using var on = new CpuBackend(2) { IntegerGemmPrefill = true };
        var y0 = Poisoned(m, n);
        var y1 = Poisoned(m, n);
        off.Linear(x, weight, null, y0);
        on.Linear(x, weight, null, y1);
        var a = y0.ToFloatArray();
        var c = y1.ToFloatArray();
        // The integer path quantises the activations (about 1/254 relative per value): the two differ, but stay close.
        Assert.All(a.Zip(c), p => Assert.True(Math.Abs(p.First - p.Second) <= 0.05 * (1 + Math.Abs(p.First)), $"{p.First} vs {p.Second}"));
        if (AvxVnni.IsSupported) Assert.Contains(a.Zip(c), p => p.First != p.Second);
        else Assert.Equal(a, c);
    }
}
