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
                    float* s = (float*)scales.Data;
                    if (tensor.GroupSize == 0)
                    {
                        float scale = s[row];
                        for (int i = 0; i < columns; i++) destination[i] = src[i] * scale;
                    }
                    else
                    {
                        int groupSize = tensor.GroupSize, groups = columns / groupSize;
                        float* rowScales = s + (long)row * groups;
                        for (int i = 0; i < columns; i++) destination[i] = src[i] * rowScales[i / groupSize];
                    }
                    break;
                }
            default:
                throw new NotSupportedException($"dtype {tensor.DType}");
        }
        GC.KeepAlive(tensor); // its memory must outlive the reads through the raw pointers above
    }
}
