namespace MoeCompiler.Runtime.Tensors;

/// <summary>Element types the runtime stores. Activations are always <see cref="F32"/>; weights may be any.</summary>
public enum DType : byte
{
    F32,
    BF16,
    F16,
    /// <summary>Signed 8-bit weights with f32 scales per row or per group (see <see cref="Tensor.Scales"/>).</summary>
    I8,
    /// <summary>4-bit weights, two per byte, with a scale per group of 32 columns (see docs/quantization.md).</summary>
    Q4,
}

public static class DTypeExtensions
{
    public static int SizeInBytes(this DType dtype) => dtype switch
    {
        DType.F32 => 4,
        DType.BF16 => 2,
        DType.F16 => 2,
        DType.I8 => 1,
        DType.Q4 => throw new NotSupportedException("Q4 packs two values per byte: use ByteCount"),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>Bytes that <paramref name="elements"/> values take (half a byte each for <see cref="DType.Q4"/>).</summary>
    public static long ByteCount(this DType dtype, long elements) =>
        dtype == DType.Q4 ? checked(elements + 1) / 2 : checked(elements * dtype.SizeInBytes());

    /// <summary>Whether the dtype stores quantised values with a <see cref="Tensor.Scales"/> companion.</summary>
    public static bool IsQuantized(this DType dtype) => dtype is DType.I8 or DType.Q4;

    /// <summary>The name used in safetensors headers and error messages.</summary>
    public static string SafetensorsName(this DType dtype) => dtype switch
    {
        DType.F32 => "F32",
        DType.BF16 => "BF16",
        DType.F16 => "F16",
        DType.I8 => "I8",
        DType.Q4 => "Q4",
        _ => dtype.ToString(),
    };
}
