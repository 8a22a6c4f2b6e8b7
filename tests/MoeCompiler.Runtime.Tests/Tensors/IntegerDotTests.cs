using System.Runtime.Intrinsics.X86;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using Xunit;
using static MoeCompiler.Runtime.Tests.Kernels.KernelTestUtil;

namespace MoeCompiler.Runtime.Tests.Tensors;

/// <summary>
/// The integer decode path (<see cref="CpuBackend.IntegerDotDecode"/>, docs/quantization.md "Kernels"): activations
/// quantised to int8 per group of 32, integer dot products against int8 / q4 weights. Checked against a naive
/// quantiser and integer dot product written here from the documented rules, on every instruction-set path, with
/// and without AvxVnni, odd shapes, 1–3 threads.
/// </summary>
public sealed unsafe partial class IntegerDotTests
{
    private const int Group = 32;

    /// <summary>The documented activation rule, spelled out: d = max|x| / 127 (f32), q = round-half-even(x · (1 / d)),
    /// clamped to ±127; a group of zeros gets d = 0 and q = 0.</summary>
    private static (sbyte[] Q, float[] Scales) NaiveQuantizeActivations(float[] x, int rows, int k)
    {
        var q = new sbyte[rows * k];
        var scales = new float[rows * (k / Group)];
        for (int r = 0; r < rows; r++)
            for (int g = 0; g < k / Group; g++)
            {
                int first = r * k + g * Group;
                float amax = 0;
                for (int i = 0; i < Group; i++) amax = Math.Max(amax, Math.Abs(x[first + i]));
                float d = amax / 127f;
                float inverse = d == 0 ? 0 : 1f / d;
                scales[r * (k / Group) + g] = d;
                for (int i = 0; i < Group; i++)
                    q[first + i] = (sbyte)Math.Clamp(Math.Round(x[first + i] * inverse, MidpointRounding.ToEven), -127, 127);
            }
        return (q, scales);
    }

    /// <summary>Signed weight codes and f32 scales of a quantised tensor, read from the documented byte layout.</summary>
    private static (int[] Codes, float[] Scales) WeightCodes(Tensor w, QuantizationType type)
    {
        int rows = w.Rows, k = w.Columns;
        var bytes = new ReadOnlySpan<byte>((void*)w.Data, checked((int)w.ByteLength)).ToArray();
        var scaleBits = new ReadOnlySpan<ushort>((void*)w.Scales!.Data, checked((int)w.Scales.Length)).ToArray();
        GC.KeepAlive(w);
        var codes = new int[rows * k];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < k; c++)
            {
                int inGroup = c % Group;
                codes[r * k + c] = type == QuantizationType.Int8
                    ? (sbyte)bytes[r * k + c]
                    : ((inGroup < 16 ? bytes[(r * k + c - inGroup) / 2 + inGroup] & 0x0F : bytes[(r * k + c - inGroup) / 2 + inGroup - 16] >> 4) - 8);
            }
        return (codes, scaleBits.Select(b => BitConverter.Int32BitsToSingle(b << 16)).ToArray());
    }

    /// <summary>Per group the exact integer dot product; the groups combined in double with the f32 scale product.</summary>
    private static double[] NaiveProduct(float[] x, int m, int k, Tensor w, QuantizationType type, out double[] magnitude)
    {
        var (xq, xs) = NaiveQuantizeActivations(x, m, k);
        var (codes, ws) = WeightCodes(w, type);
        int n = w.Rows, groups = k / Group;
        var y = new double[m * n];
        magnitude = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0, abs = 0;
                for (int g = 0; g < groups; g++)
                {
                    long dot = 0;
                    for (int c = g * Group; c < (g + 1) * Group; c++) dot += (long)xq[i * k + c] * codes[j * k + c];
                    double scale = ws[j * groups + g] * xs[i * groups + g];
                    sum += dot * scale;
                    for (int c = g * Group; c < (g + 1) * Group; c++) abs += Math.Abs((double)xq[i * k + c] * codes[j * k + c] * scale);
                }
                y[i * n + j] = sum;
                magnitude[i * n + j] = abs;
            }
        return y;
    }

    private static IEnumerable<(KernelIsa Isa, bool Vnni)> Paths()
    {
        foreach (var isa in Isas)
        {
            yield return (isa, false);
            if (isa != KernelIsa.Scalar && AvxVnni.IsSupported) yield return (isa, true);
        }
    }

    private static CpuBackend Backend(int threads, KernelIsa isa, bool vnni) => new(threads, isa) { IntegerDotDecode = true, Vnni = vnni };

    [Theory]
    [InlineData(1, 32)]
    [InlineData(3, 96)]
    [InlineData(2, 4128)]
    public void ActivationQuantizationMatchesTheNaiveRuleOnEveryPath(int rows, int k)
    {
        var random = new Random(rows * 13 + k);
        var x = new float[rows * k];
        for (int i = 0; i < x.Length; i++) x[i] = (float)((random.NextDouble() * 2 - 1) * Math.Pow(10, random.Next(-3, 3)));
        Array.Clear(x, 0, Group); // a group of zeros
        if (k >= 3 * Group)
        {
            x[Group + 3] = -7f; // a negative extreme
            x[2 * Group] = 1e-30f; // a tiny group
            for (int i = 1; i < Group; i++) x[2 * Group + i] = i % 2 == 0 ? 0 : -1e-31f;
        }
        var (expectedQ, expectedScales) = NaiveQuantizeActivations(x, rows, k);
        int groups = k / Group;
        foreach (var isa in Isas)
        {
            var q = new sbyte[rows * k];
            var scales = new float[rows * groups];
            var offsets = new int[rows * groups];
            fixed (float* xp = x)
            fixed (sbyte* qp = q)
            fixed (float* sp = scales)
            fixed (int* op = offsets)
                for (int r = 0; r < rows; r++)
                    Gemm.QuantizeActivationRow(isa, xp + r * k, k, qp + r * k, sp + r * groups, op + r * groups);
            Assert.Equal(expectedQ, q);
            Assert.Equal(expectedScales, scales);
            for (int g = 0; g < rows * groups; g++)
                Assert.Equal(-8 * expectedQ.Skip(g * Group).Take(Group).Sum(v => v), offsets[g]);
        }
    }

    /// <summary>Power-of-two scales make every f32 step exact, so each path must give the integer sums exactly.</summary>
    [Theory]
    [InlineData(QuantizationType.Int8)]
    [InlineData(QuantizationType.Q4)]
    public void IntegerSumsAreExactOnEveryPath(QuantizationType type)
    {
        var random = new Random(type == QuantizationType.Int8 ? 1 : 2);
        foreach (var (m, k, n) in new[] { (1, 32, 5), (3, 288, 17), (4, 4128, 9), (2, 352, 33) })
        {
            // Activations: integers in ±127 times 2⁻⁶ with each group's extreme at exactly ±127 (scale 2⁻⁶).
            var x = new float[m * k];
            for (int i = 0; i < x.Length; i++) x[i] = random.Next(-127, 128) / 64f;
            for (int g = 0; g < x.Length / Group; g++) x[g * Group + random.Next(Group)] = random.Next(2) == 0 ? 127 / 64f : -127 / 64f;
            // Weights: int8 codes in ±127 with an extreme of 127 (scale 2⁻⁷), or q4 levels −8..7 with −8 present (scale 2⁻⁸).
            var w = new float[n * k];
            float step = type == QuantizationType.Int8 ? 1 / 128f : 1 / 256f;
            for (int i = 0; i < w.Length; i++) w[i] = (type == QuantizationType.Int8 ? random.Next(-127, 128) : random.Next(-8, 8)) * step;
            for (int g = 0; g < w.Length / Group; g++) w[g * Group + random.Next(Group)] = type == QuantizationType.Int8 ? 127 * step : -8 * step;
            var weight = WeightQuantizer.Quantize(Tensor.FromFloats(w, n, k), type);
            var expected = NaiveProduct(x, m, k, weight, type, out _);
            var xt = Tensor.FromFloats(x, m, k);
            foreach (var (isa, vnni) in Paths())
            {
                using var backend = Backend(2, isa, vnni);
                var y = Poisoned(m, n);
                backend.Linear(xt, weight, null, y);
                var actual = y.ToFloatArray();
                for (int i = 0; i < expected.Length; i++)
                    Assert.True(expected[i] == actual[i], $"{type} {m}x{k}x{n} {isa} vnni={vnni} element {i}: {expected[i]:R} vs {actual[i]:R}");
            }
        }
    }

    public static TheoryData<QuantizationType, int, int, int> Cases()
    {
        var data = new TheoryData<QuantizationType, int, int, int>();
        int[][] shapes = [[1, 32, 1], [1, 96, 33], [2, 64, 7], [3, 160, 40], [4, 4128, 9], [1, 2080, 531], [1, 5504, 13]];
        foreach (var type in new[] { QuantizationType.Int8, QuantizationType.Q4 })
            foreach (var s in shapes) data.Add(type, s[0], s[1], s[2]);
        return data;
    }

    /// <summary>Random values: the f32 combination of the exact integer sums is within 2e-6 of the naive sum in
    /// double, relative to Σ |x_q · w_q| · scale (a few dozen f32 roundings of the largest partial sums).</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void LinearMatchesTheNaiveIntegerProductOnEveryPath(QuantizationType type, int m, int k, int n)
    {
        var random = new Random(m * 7919 + k * 31 + n);
        var x = RandomF32(random, 1f, m, k);
        var weight = WeightQuantizer.Quantize(RandomF32(random, 0.05f, n, k), type);
        var bias = RandomF32(random, 1f, n);
        var expected = NaiveProduct(x.ToFloatArray(), m, k, weight, type, out var magnitude);
        var b = bias.ToFloatArray();
        foreach (var (isa, vnni) in Paths())
        {
            using var backend = Backend(2, isa, vnni);
            var y = Poisoned(m, n);
            backend.Linear(x, backend.PrepareLinearWeight(weight), bias, y);
            var actual = y.ToFloatArray();
            for (int i = 0; i < actual.Length; i++)
            {
                double e = expected[i] + b[i % n];
                double tolerance = 2e-6 * (magnitude[i] + Math.Abs(b[i % n])) + 1e-30;
                Assert.True(Math.Abs(actual[i] - e) <= tolerance, $"{type} {m}x{k}x{n} {isa} vnni={vnni} element {i}: expected {e:R}, got {actual[i]:R}");
            }
        }
    }

    /// <summary>AvxVnni and the AVX2 pair compute the same exact integers, and the AVX2 and AVX-512 paths then combine
    /// them in their own fixed orders: with and without VNNI the bits agree.</summary>
    [Fact]
    public void VnniAndTheAvx2FallbackAgreeBitForBit()
    {
        if (!AvxVnni.IsSupported) return;
        var random = new Random(4);
        foreach (var type in new[] { QuantizationType.Int8, QuantizationType.Q4 })
            foreach (var isa in Isas.Where(i => i != KernelIsa.Scalar))
            {
                var x = RandomF32(random, 1f, 3, 2080);
                var w = WeightQuantizer.Quantize(RandomF32(random, 0.05f, 77, 2080), type);
                using var with = Backend(2, isa, vnni: true);
                using var without = Backend(2, isa, vnni: false);
                var a = Poisoned(3, 77);
                var c = Poisoned(3, 77);
                with.Linear(x, w, null, a);
                without.Linear(x, w, null, c);
                AssertBitwiseEqual(a, c, $"{type} {isa}");
            }
    }

    [Fact]
    public void ResultsAreBitwiseIndependentOfThreadCountAndOfTheOtherRows()
    {
        var random = new Random(9);
        foreach (var (isa, vnni) in Paths())
        {
            using var one = Backend(1, isa, vnni);
            using var two = Backend(2, isa, vnni);
            using var three = Backend(3, isa, vnni);
            foreach (var type in new[] { QuantizationType.Int8, QuantizationType.Q4 })
                foreach (int m in new[] { 1, 3, 4, 9 })
                {
                    var x = RandomF32(random, 1f, m, 320);
                    var w = WeightQuantizer.Quantize(RandomF32(random, 0.05f, 531, 320), type);
                    var a = Poisoned(m, 531);
                    var b = Poisoned(m, 531);
                    var c = Poisoned(m, 531);
                    // LinearRows runs every row with the decode arithmetic (m = 9 included).
                    one.LinearRows(x, w, null, a);
                    two.LinearRows(x, w, null, b);
                    three.LinearRows(x, w, null, c);
                    AssertBitwiseEqual(a, b, $"{type} m={m} {isa} vnni={vnni}");
                    AssertBitwiseEqual(a, c, $"{type} m={m} {isa} vnni={vnni}");
                    // Row i alone gives the same bits as within the batch.
                    var xs = x.ToFloatArray();
                    var all = a.ToFloatArray();
                    for (int i = 0; i < m; i++)
                    {
                        var row = Poisoned(1, 531);
                        two.Linear(Tensor.FromFloats(xs.AsSpan(i * 320, 320).ToArray(), 1, 320), w, null, row);
                        var single = row.ToFloatArray();
                        for (int j = 0; j < 531; j++)
                            Assert.True(BitConverter.SingleToInt32Bits(single[j]) == BitConverter.SingleToInt32Bits(all[i * 531 + j]),
                                $"{type} m={m} {isa} vnni={vnni} row {i} column {j}: {single[j]:R} alone vs {all[i * 531 + j]:R} in the batch");
                    }
                }
        }
    }

    /// <summary>q4's activation order (Gemm.SwizzleQ4Quads): per four groups, the first 16 columns of each, then the
    /// last 16 of each; a last partial quad stays as it is.</summary>
    [Theory]
    [InlineData(32)]
    [InlineData(96)]
    [InlineData(128)]
    [InlineData(2080)]
    public void Q4ActivationOrderTakesTheHalvesOfEveryFourGroupsInTurn(int k)
    {
        var q = new sbyte[k];
        for (int i = 0; i < k; i++) q[i] = (sbyte)(i * 37 % 255 - 127);
        var expected = new sbyte[k];
        for (int c = 0; c < k; c++)
        {
            int quad = c / 128 * 128, inQuad = c % 128;
            // Position inQuad holds half inQuad / 64 (columns 0–15 or 16–31) of group (inQuad % 64) / 16.
            int source = quad + 128 <= k ? quad + (inQuad % 64) / 16 * 32 + inQuad / 64 * 16 + inQuad % 16 : c;
            expected[c] = q[source];
        }
        var actual = new sbyte[k];
        fixed (sbyte* qp = q)
        fixed (sbyte* ap = actual)
            Gemm.SwizzleQ4Quads(qp, k, ap);
        Assert.Equal(expected, actual);
    }

    /// <summary>The 512-bit q4 kernel (Gemm.Q4Wide) and the 256-bit ones (vpdpbusd and vpmaddubsw) sum the same exact
    /// integers and combine them in the same order: the same bits, around the 8-group block edges and for pairs of rows.</summary>
    [Fact]
    public void WideAndNarrowQ4KernelsAgreeBitForBit()
    {
        if (!KernelIsaSupport.IsSupported(KernelIsa.Avx512)) return;
        var random = new Random(9);
        try
        {
            foreach (int k in new[] { 256, 288, 512, 640, 2080 })
                foreach (int m in new[] { 1, 2, 3 })
                {
                    var x = RandomF32(random, 1f, m, k);
                    var w = WeightQuantizer.Quantize(RandomF32(random, 0.05f, 45, k), QuantizationType.Q4);
                    Gemm.Q4Wide = true;
                    using var wide = Backend(2, KernelIsa.Avx512, vnni: AvxVnni.IsSupported);
                    var expected = Poisoned(m, 45);
                    wide.Linear(x, w, null, expected);
                    Gemm.Q4Wide = false;
                    foreach (var (isa, vnni) in new[] { (KernelIsa.Avx512, true), (KernelIsa.Avx512, false), (KernelIsa.Avx2, true), (KernelIsa.Avx2, false) })
                    {
                        if (vnni && !AvxVnni.IsSupported) continue;
                        using var narrow = Backend(2, isa, vnni);
                        var actual = Poisoned(m, 45);
                        narrow.Linear(x, w, null, actual);
                        AssertBitwiseEqual(expected, actual, $"k={k} m={m} {isa} vnni={vnni}");
                    }
                }
        }
        finally
        {
            Gemm.Q4Wide = true;
        }
    }

    /// <summary>The blocked kernels take 8 groups per step and the rest one by one: widths around the block edges
    /// (7–9, 15–17 groups), odd row counts (pairs and a single row), both formats, every path: each within the naive
    /// product's tolerance, and each row equal to itself alone.</summary>
    [Theory]
    [InlineData(QuantizationType.Int8)]
    [InlineData(QuantizationType.Q4)]
    public void BlockedKernelsMatchTheNaiveProductAroundBlockEdges(QuantizationType type)
    {
        var random = new Random(type == QuantizationType.Int8 ? 21 : 22);
        foreach (int k in new[] { 224, 256, 288, 480, 512, 544 })
            foreach (int m in new[] { 1, 2, 3, 5 })
            {
                int n = 19;
                var x = RandomF32(random, 1f, m, k);
                var weight = WeightQuantizer.Quantize(RandomF32(random, 0.05f, n, k), type);
                var expected = NaiveProduct(x.ToFloatArray(), m, k, weight, type, out var magnitude);
                var xs = x.ToFloatArray();
                foreach (var (isa, vnni) in Paths())
                {
                    using var backend = new CpuBackend(2, isa) { IntegerDotDecode = true, Vnni = vnni };
                    var y = Poisoned(m, n);
                    backend.LinearRows(x, weight, null, y);
                    var actual = y.ToFloatArray();
                    string what = $"{type} {m}x{k}x{n} {isa} vnni={vnni}";
                    for (int i = 0; i < actual.Length; i++)
                        Assert.True(Math.Abs(actual[i] - expected[i]) <= 2e-6 * magnitude[i] + 1e-30,
                            $"{what} element {i}: expected {expected[i]:R}, got {actual[i]:R}");
                    for (int i = 0; i < m; i++)
                    {
                        var row = Poisoned(1, n);
                        backend.Linear(Tensor.FromFloats(xs.AsSpan(i * k, k).ToArray(), 1, k), weight, null, row);
                        var single = row.ToFloatArray();
                        for (int j = 0; j < n; j++)
                            Assert.True(BitConverter.SingleToInt32Bits(single[j]) == BitConverter.SingleToInt32Bits(actual[i * n + j]),
                                $"{what} row {i} column {j}: {single[j]:R} alone vs {actual[i * n + j]:R} with the others");
                    }
                }
            }
    }

    /// <summary>The blocked kernels run their row loop inside the kernel (Gemm.IntegerRowsBlocked); called once per
    /// weight row instead (Gemm.PerRowIntegerCalls, the benchmark's A/B) they give the same bits. Both select the same
    /// arithmetic, so flipping the switch cannot disturb tests running beside this one.</summary>
    [Fact]
    public void TheRowLoopInsideTheKernelGivesTheBitsOfOneCallPerRow()
    {
        var random = new Random(23);
        foreach (var type in new[] { QuantizationType.Int8, QuantizationType.Q4 })
            foreach (var (isa, vnni) in Paths())
                foreach (int m in new[] { 1, 3, 4 })
                {
                    var x = RandomF32(random, 1f, m, 544);
                    var w = WeightQuantizer.Quantize(RandomF32(random, 0.05f, 77, 544), type);
                    var bias = RandomF32(random, 1f, 77);
                    using var backend = Backend(2, isa, vnni);
                    var inside = Poisoned(m, 77);
                    var perRow = Poisoned(m, 77);
                    backend.Linear(x, w, bias, inside);
                    try
                    {
                        Gemm.PerRowIntegerCalls = true;
                        backend.Linear(x, w, bias, perRow);
                    }
                    finally
                    {
                        Gemm.PerRowIntegerCalls = false;
                    }
                    AssertBitwiseEqual(perRow, inside, $"{type} m={m} {isa} vnni={vnni}");
                }
    }

    /// <summary>The option off keeps the f32-activation kernels; per-row int8 (older checkpoints) and prefill (more
    /// than 4 rows through Linear) never take the integer path.</summary>
    [Fact]
    public void OnlyDecodeProductsOfGroupedWeightsTakeTheIntegerPath()
    {
        var random = new Random(6);
        var w = WeightQuantizer.Quantize(RandomF32(random, 0.05f, 40, 96), QuantizationType.Int8);
        using var on = new CpuBackend(2) { IntegerDotDecode = true };
        using var off = new CpuBackend(2) { IntegerDotDecode = false };
        foreach (int m in new[] { 1, 6 })
        {
            var x = RandomF32(random, 1f, m, 96);
            var a = Poisoned(m, 40);
            var b = Poisoned(m, 40);
            on.Linear(x, w, null, a);
            off.Linear(x, w, null, b);
            var (ea, eb) = (a.ToFloatArray(), b.ToFloatArray());
            if (m == 1) Assert.NotEqual(ea, eb); // activation rounding moves the last bits at least
            else Assert.Equal(ea, eb);
        }
        var perRow = RandomWeight(random, DType.I8, 40, 96);
        var x1 = RandomF32(random, 1f, 1, 96);
        var p = Poisoned(1, 40);
        var q = Poisoned(1, 40);
        on.Linear(x1, perRow, null, p);
        off.Linear(x1, perRow, null, q);
        Assert.Equal(q.ToFloatArray(), p.ToFloatArray());
    }
}
