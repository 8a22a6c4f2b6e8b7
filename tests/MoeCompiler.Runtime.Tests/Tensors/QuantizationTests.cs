using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using Xunit;
using static MoeCompiler.Runtime.Tests.Kernels.KernelTestUtil;

namespace MoeCompiler.Runtime.Tests.Tensors;

/// <summary>
/// The int8 and q4 formats (docs/quantization.md) against a naive quantiser and decoder written here from the
/// documented layout, and the Linear kernels over them against double-accumulated products of the naively decoded
/// weights, on every instruction-set path, odd shapes, and 1–3 threads.
/// </summary>
public sealed unsafe class QuantizationTests
{
    private const int Group = 32;

    /// <summary>The documented format, spelled out independently: bytes of the values and bf16 scale bits.</summary>
    private static (byte[] Values, ushort[] Scales) NaiveQuantize(float[] w, int rows, int columns, QuantizationType type)
    {
        int groups = columns / Group;
        var values = new byte[type == QuantizationType.Int8 ? rows * columns : rows * columns / 2];
        var scales = new ushort[rows * groups];
        for (int r = 0; r < rows; r++)
            for (int g = 0; g < groups; g++)
            {
                int first = r * columns + g * Group;
                // The value of largest magnitude, the first one on ties.
                float extreme = 0;
                for (int i = 0; i < Group; i++)
                    if (Math.Abs(w[first + i]) > Math.Abs(extreme)) extreme = w[first + i];
                float raw = type == QuantizationType.Int8 ? Math.Abs(extreme) / 127f : extreme / -8f;
                ushort bits = RoundToBf16(raw);
                scales[r * groups + g] = bits;
                float scale = BitConverter.Int32BitsToSingle(bits << 16);
                for (int i = 0; i < Group; i++)
                {
                    double ratio = scale == 0 ? 0 : w[first + i] / scale;
                    if (type == QuantizationType.Int8)
                        values[first + i] = (byte)(sbyte)Math.Clamp(Math.Round(ratio, MidpointRounding.ToEven), -127, 127);
                    else
                    {
                        int nibble = (int)Math.Clamp(Math.Round(ratio, MidpointRounding.ToEven) + 8, 0, 15);
                        int index = first / 2 + i % 16;
                        values[index] |= (byte)(i < 16 ? nibble : nibble << 4);
                    }
                }
            }
        return (values, scales);
    }

    /// <summary>Nearest bf16, ties to the even one, found by comparing the two bf16 neighbours in double.</summary>
    private static ushort RoundToBf16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        ushort down = (ushort)(bits >> 16), up = (ushort)(down + 1);
        double below = Math.Abs((double)value - BitConverter.Int32BitsToSingle(down << 16));
        double above = Math.Abs((double)value - BitConverter.Int32BitsToSingle(up << 16));
        if (below < above) return down;
        if (above < below) return up;
        return (down & 1) == 0 ? down : up;
    }

    private static float[] NaiveDequantize(byte[] values, ushort[] scales, int rows, int columns, QuantizationType type)
    {
        var result = new float[rows * columns];
        int groups = columns / Group;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
            {
                float scale = BitConverter.Int32BitsToSingle(scales[r * groups + c / Group] << 16);
                int q;
                if (type == QuantizationType.Int8) q = (sbyte)values[r * columns + c];
                else
                {
                    int inGroup = c % Group;
                    byte b = values[(r * columns + c - inGroup) / 2 + inGroup % 16];
                    q = (inGroup < 16 ? b & 0x0F : b >> 4) - 8;
                }
                result[r * columns + c] = q * scale;
            }
        return result;
    }

    private static float[] RandomValues(Random random, int count, float range)
    {
        var v = new float[count];
        for (int i = 0; i < count; i++) v[i] = (float)((random.NextDouble() * 2 - 1) * range);
        return v;
    }

    private static (byte[] Values, ushort[] Scales) Bytes(Tensor q)
    {
        var values = new ReadOnlySpan<byte>((void*)q.Data, checked((int)q.ByteLength)).ToArray();
        var scales = new ReadOnlySpan<ushort>((void*)q.Scales!.Data, checked((int)q.Scales.Length)).ToArray();
        GC.KeepAlive(q);
        return (values, scales);
    }

    public static TheoryData<QuantizationType, int, int> Shapes() => new()
    {
        { QuantizationType.Int8, 1, 32 }, { QuantizationType.Int8, 7, 96 }, { QuantizationType.Int8, 33, 4128 },
        { QuantizationType.Q4, 1, 32 }, { QuantizationType.Q4, 7, 96 }, { QuantizationType.Q4, 33, 4128 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void QuantizeMatchesTheNaiveQuantizerByteForByte(QuantizationType type, int rows, int columns)
    {
        var random = new Random(rows * 31 + columns);
        var w = RandomValues(random, rows * columns, 0.05f);
        // Edge cases: an all-zero group, a group whose extreme is negative, one whose extreme is positive, ties.
        Array.Clear(w, 0, Group);
        if (w.Length >= 3 * Group)
        {
            w[Group + 5] = -0.2f;
            w[2 * Group + 7] = 0.2f;
            w[2 * Group + 8] = -0.2f;
        }
        var tensor = Tensor.FromFloats(w, rows, columns);
        var quantized = WeightQuantizer.Quantize(tensor, type);
        Assert.Equal(WeightQuantizer.DTypeOf(type), quantized.DType);
        Assert.Equal(DType.BF16, quantized.Scales!.DType);
        Assert.Equal(Group, quantized.GroupSize);
        var (values, scales) = Bytes(quantized);
        var (expectedValues, expectedScales) = NaiveQuantize(w, rows, columns, type);
        Assert.Equal(expectedValues, values);
        Assert.Equal(expectedScales, scales);

        // Round trip: the tensor reads back as the naive decoder's values, each within half a step of the original.
        var decoded = quantized.ToFloatArray();
        var naive = NaiveDequantize(values, scales, rows, columns, type);
        Assert.Equal(naive, decoded);
        for (int i = 0; i < w.Length; i++)
        {
            float scale = Math.Abs(BitConverter.Int32BitsToSingle(scales[i / Group] << 16));
            // Half a step, plus what the bf16 rounding of the scale can push the extreme past the clamp; q4 also clamps
            // a value of the opposite sign as large as the extreme at 7 steps (a full step off), as Q4_0 does.
            double steps = type == QuantizationType.Int8 ? 0.5 + 127 / 256.0 : 1 + 8 / 256.0;
            Assert.True(Math.Abs(decoded[i] - w[i]) <= scale * steps + 1e-12,
                $"{type} element {i}: {w[i]} decoded as {decoded[i]} (scale {scale})");
        }
    }

    [Theory]
    [InlineData(QuantizationType.Int8)]
    [InlineData(QuantizationType.Q4)]
    public void QuantizesBf16SourcesAndRejectsBadInput(QuantizationType type)
    {
        var random = new Random(5);
        var bf16 = RandomWeight(random, DType.BF16, 5, 64);
        var (values, scales) = Bytes(WeightQuantizer.Quantize(bf16, type));
        var expected = NaiveQuantize(bf16.ToFloatArray(), 5, 64, type);
        Assert.Equal(expected.Values, values);
        Assert.Equal(expected.Scales, scales);

        Assert.Throws<ArgumentException>(() => WeightQuantizer.Quantize(Tensor.FromFloats(new float[5 * 48], 5, 48), type));
        Assert.Throws<ArgumentException>(() => WeightQuantizer.Quantize(Tensor.FromFloats(new float[64], 64), type));
        var withNaN = new float[2 * 32];
        withNaN[37] = float.NaN;
        var e = Assert.Throws<ArgumentException>(() => WeightQuantizer.Quantize(Tensor.FromFloats(withNaN, 2, 32), type));
        Assert.Contains("row 1, column 5", e.Message);
        var q = WeightQuantizer.Quantize(bf16, type);
        Assert.Throws<ArgumentException>(() => WeightQuantizer.Quantize(q, type));
    }

    public static TheoryData<QuantizationType, int, int, int> LinearCases()
    {
        var data = new TheoryData<QuantizationType, int, int, int>();
        int[][] shapes = [[1, 32, 1], [1, 96, 33], [2, 64, 7], [3, 160, 40], [4, 4128, 9], [5, 96, 17], [13, 1056, 70], [37, 2080, 33], [1, 2048, 531]];
        foreach (var type in new[] { QuantizationType.Int8, QuantizationType.Q4 })
            foreach (var s in shapes) data.Add(type, s[0], s[1], s[2]);
        return data;
    }

    [Theory]
    [MemberData(nameof(LinearCases))]
    public void LinearMatchesNaivelyDecodedWeightsOnEveryPath(QuantizationType type, int m, int k, int n)
    {
        var random = new Random(m * 7919 + k * 31 + n);
        var x = RandomF32(random, 1f, m, k);
        var w = RandomValues(random, n * k, 1f);
        var quantized = WeightQuantizer.Quantize(Tensor.FromFloats(w, n, k), type);
        var (values, scales) = Bytes(quantized);
        var decoded = NaiveDequantize(values, scales, n, k, type);
        var bias = RandomF32(random, 1f, n);
        var xs = x.ToFloatArray();
        var b = bias.ToFloatArray();
        var expected = new float[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = b[j];
                for (int p = 0; p < k; p++) sum += (double)xs[i * k + p] * decoded[j * k + p];
                expected[i * n + j] = (float)sum;
            }
        foreach (var isa in Isas)
        {
            // The f32-activation kernels; the integer decode path has its own tests (IntegerDotTests).
            using var backend = new CpuBackend(2, isa) { IntegerDotDecode = false, IntegerGemmPrefill = false };
            var actual = Poisoned(m, n);
            backend.Linear(x, backend.PrepareLinearWeight(quantized), bias, actual);
            AssertClose(expected, actual, atol: 2e-6 * Math.Sqrt(k) + 1e-6, rtol: 1e-5, $"{type} Linear {m}x{k}x{n} {isa}");
        }
    }

    [Fact]
    public void LinearResultsAreBitwiseIndependentOfThreadCount()
    {
        var random = new Random(17);
        foreach (var isa in Isas)
        {
            using var one = new CpuBackend(1, isa);
            using var two = new CpuBackend(2, isa);
            using var three = new CpuBackend(3, isa);
            foreach (var type in new[] { QuantizationType.Int8, QuantizationType.Q4 })
                foreach (int m in new[] { 1, 3, 37 })
                {
                    var x = RandomF32(random, 1f, m, 320);
                    var w = WeightQuantizer.Quantize(RandomF32(random, 1f, 531, 320), type);
                    var a = Poisoned(m, 531);
                    var b = Poisoned(m, 531);
                    var c = Poisoned(m, 531);
                    one.Linear(x, w, null, a);
                    two.Linear(x, w, null, b);
                    three.Linear(x, w, null, c);
                    AssertBitwiseEqual(a, b, $"{type} m={m} {isa}");
                    AssertBitwiseEqual(a, c, $"{type} m={m} {isa}");
                }
        }
    }

    [Fact]
    public void EmbeddingRowsOfQuantizedTablesAreTheDecodedRows()
    {
        var random = new Random(3);
        foreach (var type in new[] { QuantizationType.Int8, QuantizationType.Q4 })
        {
            var table = WeightQuantizer.Quantize(RandomF32(random, 0.1f, 11, 96), type);
            var (values, scales) = Bytes(table);
            var decoded = NaiveDequantize(values, scales, 11, 96, type);
            var y = Poisoned(3, 96);
            CpuBackend.Shared.Embedding(table, [10, 0, 4], y);
            var expected = new[] { 10, 0, 4 }.SelectMany(r => decoded.Skip(r * 96).Take(96)).ToArray();
            Assert.Equal(expected, y.ToFloatArray());
        }
    }

    [Fact]
    public void SlicedRowsKeepTheirScales()
    {
        var random = new Random(8);
        var q4 = WeightQuantizer.Quantize(RandomF32(random, 1f, 6, 64), QuantizationType.Q4);
        var all = q4.ToFloatArray();
        var slice = q4.SliceRows(2, 3);
        Assert.Equal(all.Skip(2 * 64).Take(3 * 64).ToArray(), slice.ToFloatArray());
    }

    [Theory]
    [InlineData(QuantizationType.Int8)]
    [InlineData(QuantizationType.Q4)]
    public void F32ScalesAreTheUnroundedScaleOfTheNaiveQuantizer(QuantizationType type)
    {
        var random = new Random(12);
        var w = RandomValues(random, 5 * 96, 0.05f);
        var quantized = WeightQuantizer.Quantize(Tensor.FromFloats(w, 5, 96), type, DType.F32);
        Assert.Equal(DType.F32, quantized.Scales!.DType);
        var scales = quantized.Scales.ToFloatArray();
        var decoded = quantized.ToFloatArray();
        for (int r = 0; r < 5; r++)
            for (int g = 0; g < 3; g++)
            {
                var group = w.AsSpan(r * 96 + g * Group, Group);
                float extreme = 0;
                foreach (float v in group) if (Math.Abs(v) > Math.Abs(extreme)) extreme = v;
                float scale = type == QuantizationType.Int8 ? Math.Abs(extreme) / 127f : extreme / -8f;
                Assert.Equal(scale, scales[r * 3 + g]);
                for (int i = 0; i < Group; i++)
                {
                    double q = Math.Round(group[i] / scale, MidpointRounding.ToEven);
                    q = type == QuantizationType.Int8 ? Math.Clamp(q, -127, 127) : Math.Clamp(q, -8, 7);
                    Assert.Equal((float)(q * scale), decoded[r * 96 + g * Group + i]);
                }
            }
        Assert.Throws<ArgumentException>(() => WeightQuantizer.Quantize(Tensor.FromFloats(w, 5, 96), type, DType.F16));
    }

    /// <summary>The q4 scale search keeps the format (bf16 scale, codes = round(w / scale) + 8 for the stored scale) and
    /// never does worse than m / −8 on any group; on Gaussian weights it lowers the squared error clearly.</summary>
    [Fact]
    public void Q4ScaleSearchKeepsTheFormatAndNeverRaisesAGroupsError()
    {
        var random = new Random(21);
        int rows = 64, columns = 256, groups = columns / Group;
        var w = new float[rows * columns];
        for (int i = 0; i < w.Length; i++) w[i] = 0.02f * (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        Array.Clear(w, 0, Group); // a zero group keeps scale 0
        var plain = WeightQuantizer.Quantize(Tensor.FromFloats(w, rows, columns), QuantizationType.Q4);
        var searched = WeightQuantizer.Quantize(Tensor.FromFloats(w, rows, columns), QuantizationType.Q4, searchScale: true);
        var (values, scales) = Bytes(searched);
        var decoded = NaiveDequantize(values, scales, rows, columns, QuantizationType.Q4);
        Assert.Equal(decoded, searched.ToFloatArray());
        var plainDecoded = plain.ToFloatArray();
        double plainTotal = 0, searchedTotal = 0;
        for (int r = 0; r < rows; r++)
            for (int g = 0; g < groups; g++)
            {
                float scale = BitConverter.Int32BitsToSingle(scales[r * groups + g] << 16);
                double plainError = 0, searchedError = 0;
                for (int i = 0; i < Group; i++)
                {
                    int at = r * columns + g * Group + i;
                    // The codes are the nearest levels for the stored scale: the naive quantiser's rule with that scale.
                    double level = scale == 0 ? 0 : Math.Clamp(Math.Round(w[at] / scale, MidpointRounding.ToEven), -8, 7);
                    Assert.Equal((float)(level * scale), decoded[at]);
                    plainError += Math.Pow(w[at] - plainDecoded[at], 2);
                    searchedError += Math.Pow(w[at] - decoded[at], 2);
                }
                Assert.True(searchedError <= plainError, $"row {r} group {g}: {searchedError} > {plainError}");
                plainTotal += plainError;
                searchedTotal += searchedError;
            }
        Assert.True(searchedTotal < 0.9 * plainTotal, $"search: {searchedTotal / plainTotal:P1} of the plain squared error");
    }

    [Fact]
    public void RoleSelectionAndOverridesChooseEachTensorsType()
    {
        var attention = new MoeCompiler.Runtime.Checkpoints.WeightEntry("h.0.attn.c_attn.weight", [96, 64], MoeCompiler.Runtime.Checkpoints.WeightRole.Attention);
        var tower = new MoeCompiler.Runtime.Checkpoints.WeightEntry("tower.fc1.weight", [96, 64], MoeCompiler.Runtime.Checkpoints.WeightRole.Vision);
        var router = new MoeCompiler.Runtime.Checkpoints.WeightEntry("gate.wg.weight", [4, 64], MoeCompiler.Runtime.Checkpoints.WeightRole.Router);
        var lmHead = new MoeCompiler.Runtime.Checkpoints.WeightEntry("lm_head.weight", [96, 64], MoeCompiler.Runtime.Checkpoints.WeightRole.LmHead);
        var mixed = new MoeCompiler.Runtime.Checkpoints.QuantizationOptions(QuantizationType.Q4)
        {
            RoleTypes = new Dictionary<MoeCompiler.Runtime.Checkpoints.WeightRole, QuantizationType?>
            {
                [MoeCompiler.Runtime.Checkpoints.WeightRole.Vision] = null,
                [MoeCompiler.Runtime.Checkpoints.WeightRole.Attention] = QuantizationType.Int8,
                [MoeCompiler.Runtime.Checkpoints.WeightRole.Router] = QuantizationType.Int8, // never: routers stay as stored
            },
        };
        Assert.Equal(QuantizationType.Int8, mixed.TypeFor(attention));
        Assert.Null(mixed.TypeFor(tower));
        Assert.Null(mixed.TypeFor(router));
        Assert.Equal(QuantizationType.Int8, mixed.TypeFor(lmHead));
        var only = new MoeCompiler.Runtime.Checkpoints.QuantizationOptions(QuantizationType.Q4) { Roles = new HashSet<MoeCompiler.Runtime.Checkpoints.WeightRole> { MoeCompiler.Runtime.Checkpoints.WeightRole.Vision } };
        Assert.Null(only.TypeFor(attention));
        Assert.Equal(QuantizationType.Int8, only.TypeFor(tower)); // q4's default tower type
        // RoleTypes can quantise what the defaults keep (int8 keeps the tower).
        var towerAtInt8 = new MoeCompiler.Runtime.Checkpoints.QuantizationOptions(QuantizationType.Int8)
        {
            RoleTypes = new Dictionary<MoeCompiler.Runtime.Checkpoints.WeightRole, QuantizationType?> { [MoeCompiler.Runtime.Checkpoints.WeightRole.Vision] = QuantizationType.Int8 },
        };
        Assert.Equal(QuantizationType.Int8, towerAtInt8.TypeFor(tower));
    }

    [Fact]
    public void DefaultPolicyKeepsTheTowerForInt8AndQuantisesItAtInt8ForQ4()
    {
        var e = new
        {
            Attention = new MoeCompiler.Runtime.Checkpoints.WeightEntry("h.0.attn.c_proj.weight", [64, 64], MoeCompiler.Runtime.Checkpoints.WeightRole.Attention),
            Expert = new MoeCompiler.Runtime.Checkpoints.WeightEntry("h.0.experts.0.w1.weight", [96, 64], MoeCompiler.Runtime.Checkpoints.WeightRole.Expert),
            Tower = new MoeCompiler.Runtime.Checkpoints.WeightEntry("tower.layers.0.self_attn.q_proj.weight", [64, 64], MoeCompiler.Runtime.Checkpoints.WeightRole.Vision),
            TowerPosition = new MoeCompiler.Runtime.Checkpoints.WeightEntry("tower.embeddings.position_embedding.weight", [577, 64], MoeCompiler.Runtime.Checkpoints.WeightRole.Vision),
            TowerBias = new MoeCompiler.Runtime.Checkpoints.WeightEntry("tower.layers.0.self_attn.q_proj.bias", [64], MoeCompiler.Runtime.Checkpoints.WeightRole.Vision),
            Projector = new MoeCompiler.Runtime.Checkpoints.WeightEntry("mm_projector.0.weight", [64, 64], MoeCompiler.Runtime.Checkpoints.WeightRole.Projector),
            Embedding = new MoeCompiler.Runtime.Checkpoints.WeightEntry("wte.weight", [512, 64], MoeCompiler.Runtime.Checkpoints.WeightRole.Embedding),
            Router = new MoeCompiler.Runtime.Checkpoints.WeightEntry("gate.wg.weight", [4, 64], MoeCompiler.Runtime.Checkpoints.WeightRole.Router),
        };
        var int8 = new MoeCompiler.Runtime.Checkpoints.QuantizationOptions(QuantizationType.Int8);
        Assert.Null(int8.TowerType);
        Assert.Equal(QuantizationType.Int8, int8.TypeFor(e.Attention));
        Assert.Equal(QuantizationType.Int8, int8.TypeFor(e.Expert));
        Assert.Null(int8.TypeFor(e.Tower));
        Assert.Null(int8.TypeFor(e.Projector));
        Assert.Equal(QuantizationType.Int8, int8.TypeFor(e.Embedding));
        Assert.Null(int8.TypeFor(e.Router));

        var q4 = new MoeCompiler.Runtime.Checkpoints.QuantizationOptions(QuantizationType.Q4);
        Assert.Equal(QuantizationType.Int8, q4.TowerType);
        Assert.Equal(QuantizationType.Q4, q4.TypeFor(e.Attention));
        Assert.Equal(QuantizationType.Q4, q4.TypeFor(e.Expert));
        Assert.Equal(QuantizationType.Int8, q4.TypeFor(e.Tower));
        Assert.Equal(QuantizationType.Int8, q4.TypeFor(e.Projector));
        Assert.Null(q4.TypeFor(e.TowerPosition)); // added, not multiplied: never quantised
        Assert.Null(q4.TypeFor(e.TowerBias));
        Assert.Equal(QuantizationType.Int8, q4.TypeFor(e.Embedding));
        Assert.Null(q4.TypeFor(e.Router));

        // The tower at the chosen type, as before this default, is one init away.
        var q4Tower = q4 with { TowerType = QuantizationType.Q4 };
        Assert.Equal(QuantizationType.Q4, q4Tower.TypeFor(e.Tower));
        Assert.Equal(QuantizationType.Q4, q4Tower.TypeFor(e.Projector));
        Assert.Null(q4Tower.TypeFor(e.TowerPosition));
    }
}
