namespace MoeCompiler.Runtime.Tensors;

/// <summary>
/// Symmetric int8 weights: q = round(w / s) clamped to [−127, 127], s = max|w| / 127 over a row (per row) or over
/// <c>groupSize</c> consecutive columns of a row (per group). Dequantised value: q · s.
/// </summary>
public static class Int8Quantization
{
    /// <summary>Quantises a weight [rows, columns] of any float dtype; <paramref name="groupSize"/> 0 means per row.</summary>
    public static Tensor Quantize(Tensor weight, int groupSize = 0)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.DType == DType.I8) throw new ArgumentException($"tensor {weight.Name} is already int8", nameof(weight));
        int rows = weight.Rows, columns = weight.Columns;
        ArgumentOutOfRangeException.ThrowIfNegative(groupSize);
        if (groupSize > 0 && columns % groupSize != 0)
            throw new ArgumentException($"group size {groupSize} does not divide {columns} columns of {weight}", nameof(groupSize));
        int groups = groupSize == 0 ? 1 : columns / groupSize;
        int span = groupSize == 0 ? columns : groupSize;
        var scales = Tensor.Allocate(DType.F32, groupSize == 0 ? new[] { rows } : new[] { rows, groups });
        var quantized = new Tensor(new NativeStorage(weight.Length), 0, DType.I8, weight.Shape, weight.Name, scales, groupSize);
        var q = quantized.AsSpan<sbyte>();
        var s = scales.AsFloats();
        var row = new float[columns];
        for (int r = 0; r < rows; r++)
        {
            Kernels.NumberFormats.ReadRow(weight, r, row);
            for (int g = 0; g < groups; g++)
            {
                var values = row.AsSpan(g * span, span);
                float maxAbs = 0;
                foreach (float v in values)
                {
                    if (!float.IsFinite(v)) throw new ArgumentException($"tensor {weight.Name} has a non-finite value in row {r}", nameof(weight));
                    maxAbs = Math.Max(maxAbs, Math.Abs(v));
                }
                float scale = maxAbs / 127f;
                s[r * groups + g] = scale;
                float inverse = scale == 0 ? 0 : 1f / scale;
                var destination = q.Slice(r * columns + g * span, span);
                for (int i = 0; i < span; i++)
                    destination[i] = (sbyte)Math.Clamp(MathF.Round(values[i] * inverse, MidpointRounding.ToEven), -127f, 127f);
            }
        }
        return quantized;
    }

    /// <summary>Throws unless a quantised <paramref name="weight"/> (int8 or q4) has f32 or bf16 scales of a shape matching
    /// its group size (q4: always groups of <see cref="WeightQuantizer.GroupSize"/>).</summary>
    public static void Validate(Tensor weight)
    {
        if (!weight.DType.IsQuantized()) return;
        var scales = weight.Scales ?? throw new ArgumentException($"quantised tensor {weight} has no scales");
        if (scales.DType is not (DType.F32 or DType.BF16)) throw new ArgumentException($"scales of {weight} must be F32 or BF16, not {scales.DType}");
        int rows = weight.Rows, columns = weight.Columns;
        if (weight.DType == DType.Q4 && weight.GroupSize != WeightQuantizer.GroupSize)
            throw new ArgumentException($"q4 tensor {weight} must have groups of {WeightQuantizer.GroupSize}, not {weight.GroupSize}");
        long expected;
        if (weight.GroupSize == 0) expected = rows;
        else
        {
            if (weight.GroupSize < 0 || columns % weight.GroupSize != 0)
                throw new ArgumentException($"group size {weight.GroupSize} does not divide the {columns} columns of {weight}");
            expected = (long)rows * (columns / weight.GroupSize);
        }
        if (scales.Length != expected)
            throw new ArgumentException($"quantised tensor {weight} needs {expected} scales, has {scales.Length}");
    }
}
