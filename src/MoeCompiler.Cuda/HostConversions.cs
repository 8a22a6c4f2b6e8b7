using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda;

/// <summary>Host-side dtype conversions used when weights are prepared for upload.</summary>
public static unsafe class HostConversions
{
    /// <summary>f32 to bf16 bits with round-to-nearest-even; NaN stays NaN (as torch's .to(torch.bfloat16)).</summary>
    public static ushort FloatToBf16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7fffffffu) > 0x7f800000u) return (ushort)((bits >> 16) | 0x40u);
        bits += 0x7fffu + ((bits >> 16) & 1u);
        return (ushort)(bits >> 16);
    }

    public static float Bf16ToFloat(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>Any host tensor's elements converted to <paramref name="target"/> (F32, BF16 or F16), as raw bytes.</summary>
    public static byte[] ConvertTo(Tensor tensor, DType target)
    {
        if (!tensor.IsHost) throw new ArgumentException($"tensor {tensor.Name} is not in host memory", nameof(tensor));
        if (target == tensor.DType && !target.IsQuantized())
        {
            var copy = new ReadOnlySpan<byte>((void*)tensor.Data, checked((int)tensor.ByteLength)).ToArray();
            GC.KeepAlive(tensor); // its memory must outlive the copy
            return copy;
        }
        float[] values = tensor.ToFloatArray();
        var bytes = new byte[checked(values.Length * target.SizeInBytes())];
        switch (target)
        {
            case DType.F32:
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(bytes);
                break;
            case DType.BF16:
                {
                    var dst = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan());
                    for (int i = 0; i < values.Length; i++) dst[i] = FloatToBf16(values[i]);
                    break;
                }
            case DType.F16:
                {
                    var dst = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(bytes.AsSpan());
                    for (int i = 0; i < values.Length; i++) dst[i] = (Half)values[i];
                    break;
                }
            default:
                throw new ArgumentOutOfRangeException(nameof(target), target, "device weights are F32, BF16 or F16");
        }
        return bytes;
    }
}
