using System.Runtime.CompilerServices;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>Scalar conversions between the stored weight formats and f32.</summary>
public static class NumberFormats
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BF16ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Round to nearest even, as PyTorch's <c>.to(torch.bfloat16)</c>; NaN stays NaN.</summary>
    public static ushort FloatToBF16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint roundingBias = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + roundingBias) >> 16);
    }

    /// <summary>Columns per scale of the q4 format (docs/quantization.md).</summary>
    public const int Q4Group = 32;

    /// <summary>Scale <paramref name="index"/> of a quantised tensor's f32 or bf16 scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float ScaleAt(Tensor scales, long index) =>
        scales.DType == DType.BF16 ? BF16ToFloat(((ushort*)scales.Data)[index]) : ((float*)scales.Data)[index];

    /// <summary>Row <paramref name="row"/> of a 2-D view of <paramref name="tensor"/> (any dtype) as f32.</summary>
    public static unsafe void ReadRow(Tensor tensor, int row, Span<float> destination)
    {
        int columns = tensor.Columns;
        if (destination.Length < columns) throw new ArgumentException("destination too short", nameof(destination));
        long start = (long)row * columns;
        switch (tensor.DType)
        {
            case DType.F32:
                new ReadOnlySpan<float>((float*)tensor.Data + start, columns).CopyTo(destination);
                break;
            case DType.BF16:
                {
                    ushort* src = (ushort*)tensor.Data + start;
                    for (int i = 0; i < columns; i++) destination[i] = BF16ToFloat(src[i]);
                    break;
                }
            case DType.F16:
                System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(
                    new ReadOnlySpan<Half>((Half*)tensor.Data + start, columns), destination[..columns]);
                break;
            case DType.I8:
                {
                    sbyte* src = (sbyte*)tensor.Data + start;
                    var scales = tensor.Scales!;
                    int groupSize = tensor.GroupSize == 0 ? columns : tensor.GroupSize, groups = columns / groupSize;
                    for (int i = 0; i < columns; i++) destination[i] = src[i] * ScaleAt(scales, (long)row * groups + i / groupSize);
                    GC.KeepAlive(scales);
                    break;
                }
            case DType.Q4:
                {
                    byte* src = (byte*)tensor.Data + start / 2;
                    var scales = tensor.Scales!;
                    int groups = columns / Q4Group;
                    for (int g = 0; g < groups; g++)
                    {
                        float scale = ScaleAt(scales, (long)row * groups + g);
                        byte* packed = src + g * (Q4Group / 2);
                        var target = destination.Slice(g * Q4Group, Q4Group);
                        for (int j = 0; j < Q4Group / 2; j++)
                        {
                            target[j] = ((packed[j] & 0x0F) - 8) * scale;
                            target[j + Q4Group / 2] = ((packed[j] >> 4) - 8) * scale;
                        }
                    }
                    GC.KeepAlive(scales);
                    break;
                }
            default:
                throw new NotSupportedException($"dtype {tensor.DType}");
        }
        GC.KeepAlive(tensor); // its memory must outlive the reads through the raw pointers above
    }
}
