namespace MoeCompiler.Runtime.Tensors;

/// <summary>Element types the runtime stores. Activations are always <see cref="F32"/>; weights may be any.</summary>
public enum DType : byte
{
    F32,
    BF16,
    F16,
    /// <summary>Signed 8-bit weights with f32 scales per row or per group (see <see cref="Tensor.Scales"/>).</summary>
    I8,
}

public static class DTypeExtensions
{
    public static int SizeInBytes(this DType dtype) => dtype switch
    {
        DType.F32 => 4,
        DType.BF16 => 2,
        DType.F16 => 2,
        DType.I8 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>The name used in safetensors headers and error messages.</summary>
    public static string SafetensorsName(this DType dtype) => dtype switch
    {
        DType.F32 => "F32",
        DType.BF16 => "BF16",
        DType.F16 => "F16",
        DType.I8 => "I8",
        _ => dtype.ToString(),
    };
}
