using MoeCompiler.Runtime.Kernels;

namespace MoeCompiler.Runtime.Tensors;

/// <summary>The quantised weight formats a user can choose (docs/quantization.md).</summary>
public enum QuantizationType
{
    /// <summary>Symmetric int8, one bf16 scale per 32 columns (8.5 bits per weight, like llama.cpp's Q8_0).</summary>
    Int8,
    /// <summary>4-bit, one bf16 scale per 32 columns, values (q − 8)·scale (4.5 bits per weight, like llama.cpp's Q4_0).</summary>
    Q4,
}

/// <summary>
/// Quantises a weight [rows, columns] (any float dtype) to <see cref="DType.I8"/> or <see cref="DType.Q4"/> with a bf16
/// scale per group of <see cref="GroupSize"/> columns. The scale is rounded to bf16 first and the values are divided by the
/// rounded scale, so that dequantisation (q · scale) reproduces exactly what was chosen.
/// <list type="bullet">
/// <item>int8: scale = bf16(max|w| / 127), q = clamp(round(w / scale), −127, 127).</item>
/// <item>q4: m = the group's value of largest magnitude (sign kept), scale = bf16(m / −8),
/// q = clamp(round(w / scale) + 8, 0, 15), stored two per byte: byte j of a group holds column j in its low nibble
/// and column j + 16 in its high nibble.</item>
/// </list>
/// Rounding is to nearest, ties to even; a group of zeros gets scale 0 (and q 0, or 8 for q4).
/// </summary>
public static class WeightQuantizer
{
    public const int GroupSize = 32;

    public static DType DTypeOf(QuantizationType type) => type == QuantizationType.Int8 ? DType.I8 : DType.Q4;

    public static QuantizationType? TypeOf(DType dtype) => dtype switch
    {
        DType.I8 => QuantizationType.Int8,
        DType.Q4 => QuantizationType.Q4,
        _ => null,
    };

    /// <summary>Name used on the command line, in file metadata and in reports: "int8" or "q4".</summary>
    public static string Name(QuantizationType type) => type == QuantizationType.Int8 ? "int8" : "q4";

    public static bool TryParse(string? text, out QuantizationType type)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case "int8": case "i8": case "q8": case "q8_0": type = QuantizationType.Int8; return true;
            case "q4": case "q4_0": type = QuantizationType.Q4; return true;
            default: type = default; return false;
        }
    }

    /// <summary>Whether a weight of this shape has the layout the formats need: a matrix whose columns split into groups.</summary>
    public static bool FitsShape(ReadOnlySpan<int> shape) => shape.Length == 2 && shape[1] > 0 && shape[1] % GroupSize == 0;

    /// <summary>Bytes of the quantised values and of the scales for a weight [rows, columns].</summary>
    public static (long Values, long Scales) ByteCounts(QuantizationType type, long rows, long columns) =>
        (DTypeOf(type).ByteCount(rows * columns), rows * (columns / GroupSize) * 2);

    /// <summary>Quantises <paramref name="weight"/>; <paramref name="scaleDType"/> BF16 (the stored format) or F32 (to
    /// measure the cost of rounding the scale; the values are always divided by the scale as stored);
    /// <paramref name="searchScale"/> (q4): pick the scale of least squared error among candidates (below).</summary>
    public static Tensor Quantize(Tensor weight, QuantizationType type, DType scaleDType = DType.BF16, bool searchScale = false)
    {
        if (scaleDType is not (DType.BF16 or DType.F32))
            throw new ArgumentException($"scales are BF16 or F32, not {scaleDType}", nameof(scaleDType));
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.DType.IsQuantized()) throw new ArgumentException($"tensor {weight} is already quantised", nameof(weight));
        if (!FitsShape(weight.Shape))
            throw new ArgumentException($"tensor {weight}: quantisation needs a matrix whose columns are a multiple of {GroupSize}", nameof(weight));
        int rows = weight.Rows, columns = weight.Columns, groups = columns / GroupSize;
        var dtype = DTypeOf(type);
        var scales = new Tensor(new NativeStorage(scaleDType.ByteCount((long)rows * groups), zero: false), 0, scaleDType, [rows, groups], weight.Name + ".scales");
        var values = new Tensor(new NativeStorage(dtype.ByteCount(weight.Length), zero: false), 0, dtype, weight.Shape, weight.Name, scales, GroupSize);
        try
        {
            Parallel.For(0, (rows + RowsPerTask - 1) / RowsPerTask, () => new float[columns], (task, _, row) =>
            {
                for (int r = task * RowsPerTask, end = Math.Min(rows, r + RowsPerTask); r < end; r++)
                {
                    NumberFormats.ReadRow(weight, r, row);
                    QuantizeRow(weight, r, row, type, values, scales, searchScale);
                }
                return row;
            }, _ => { });
        }
        catch (AggregateException e) when (e.InnerExceptions.All(i => i is ArgumentException))
        {
            // The first bad row by position, whichever task saw one first.
            throw e.InnerExceptions.Cast<ArgumentException>().OrderBy(i => i.Data["row"] as int? ?? int.MaxValue).First();
        }
        GC.KeepAlive(weight);
        return values;
    }

    private const int RowsPerTask = 16;

    private static unsafe void QuantizeRow(Tensor weight, int r, float[] row, QuantizationType type, Tensor values, Tensor scales, bool searchScale)
    {
        int columns = row.Length, groups = columns / GroupSize;
        bool bf16Scales = scales.DType == DType.BF16;
        ushort* rowScales = (ushort*)scales.Data + (long)r * groups;
        float* rowScalesF32 = (float*)scales.Data + (long)r * groups;
        for (int g = 0; g < groups; g++)
        {
            var group = row.AsSpan(g * GroupSize, GroupSize);
            float extreme = 0;
            for (int i = 0; i < GroupSize; i++)
            {
                float v = group[i];
                if (!float.IsFinite(v))
                    throw new ArgumentException($"tensor {weight.Name} has a non-finite value at row {r}, column {g * GroupSize + i}", nameof(weight))
                    {
                        Data = { ["row"] = r },
                    };
                if (Math.Abs(v) > Math.Abs(extreme)) extreme = v;
            }
            float exactScale = type == QuantizationType.Int8 ? Math.Abs(extreme) / 127f : extreme / -8f;
            // Rounded first, so that the values are divided by the scale that dequantisation will use.
            float scale = Stored(exactScale, bf16Scales);
            if (searchScale && type == QuantizationType.Q4) scale = SearchQ4Scale(group, extreme, scale, bf16Scales);
            if (bf16Scales) rowScales[g] = NumberFormats.FloatToBF16(scale);
            else rowScalesF32[g] = scale;
            if (type == QuantizationType.Int8)
            {
                sbyte* q = (sbyte*)values.Data + (long)r * columns + g * GroupSize;
                for (int i = 0; i < GroupSize; i++)
                    q[i] = scale == 0 ? (sbyte)0 : (sbyte)Math.Clamp(MathF.Round(group[i] / scale, MidpointRounding.ToEven), -127f, 127f);
            }
            else
            {
                byte* packed = (byte*)values.Data + ((long)r * columns + g * GroupSize) / 2;
                for (int j = 0; j < GroupSize / 2; j++)
                    packed[j] = (byte)(Nibble(group[j], scale) | Nibble(group[j + GroupSize / 2], scale) << 4);
            }
        }
    }

    private static float Stored(float scale, bool bf16) => bf16 ? NumberFormats.BF16ToFloat(NumberFormats.FloatToBF16(scale)) : scale;

    /// <summary>
    /// The q4 scale of least squared error for one group, in the spirit of llama.cpp's make_qx_quants: candidates
    /// m / d for d = −8 ± 0.25·k (k ≤ 4; beyond −8 the extreme clips, short of it the codes spread), each also refitted
    /// by least squares to the codes it chose (s = Σ w·l / Σ l²); every candidate is rounded to the stored scale type
    /// before its error is measured, so the chosen scale is exactly the one dequantisation uses.
    /// </summary>
    private static float SearchQ4Scale(ReadOnlySpan<float> group, float extreme, float scale, bool bf16)
    {
        if (scale == 0) return 0;
        float best = scale;
        double bestError = Q4Error(group, scale);
        for (int k = -4; k <= 4; k++)
        {
            float candidate = Stored(extreme / (-8f + 0.25f * k), bf16);
            if (candidate == 0) continue;
            double error = Q4Error(group, candidate);
            if (error < bestError) (best, bestError) = (candidate, error);
            double wl = 0, ll = 0;
            foreach (float w in group)
            {
                int level = Nibble(w, candidate) - 8;
                wl += (double)w * level;
                ll += (double)level * level;
            }
            if (ll == 0) continue;
            float refit = Stored((float)(wl / ll), bf16);
            if (refit == 0) continue;
            error = Q4Error(group, refit);
            if (error < bestError) (best, bestError) = (refit, error);
        }
        return best;
    }

    private static double Q4Error(ReadOnlySpan<float> group, float scale)
    {
        double sum = 0;
        foreach (float w in group)
        {
            double d = w - (Nibble(w, scale) - 8) * (double)scale;
            sum += d * d;
        }
        return sum;
    }

    private static int Nibble(float value, float scale) =>
        scale == 0 ? 8 : (int)Math.Clamp(MathF.Round(value / scale, MidpointRounding.ToEven) + 8f, 0f, 15f);

    /// <summary>The values a quantised weight stands for, as a new f32 tensor (fake quantisation).</summary>
    public static Tensor Dequantize(Tensor quantized)
    {
        ArgumentNullException.ThrowIfNull(quantized);
        if (!quantized.DType.IsQuantized()) throw new ArgumentException($"tensor {quantized} is not quantised", nameof(quantized));
        var values = new float[quantized.Length];
        int columns = quantized.Columns;
        for (int r = 0; r < quantized.Rows; r++) NumberFormats.ReadRow(quantized, r, values.AsSpan(r * columns, columns));
        var result = Tensor.FromFloats(values, quantized.Shape.ToArray());
        return result;
    }

    /// <summary>Throws unless a quantised <paramref name="weight"/> has scales (f32 or bf16) of the shape its format needs.</summary>
    public static void Validate(Tensor weight) => Int8Quantization.Validate(weight);
}
