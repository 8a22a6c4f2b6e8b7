using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// What a checkpoint says about one tensor, before any data is touched. <see cref="DType"/> is null when the
/// file's dtype (named by <see cref="DTypeName"/>, e.g. "I64") is one the runtime does not compute with.
/// </summary>
public sealed record CheckpointTensorInfo(string Key, string DTypeName, DType? DType, int[] Shape, string FilePath)
{
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (int d in Shape) n *= d;
            return n;
        }
    }

    public string ShapeText => Tensor.FormatShape(Shape);
}

/// <summary>One checkpoint file (safetensors or PyTorch zip): its tensors by key.</summary>
internal interface ICheckpointFile : IDisposable
{
    string FilePath { get; }
    IEnumerable<CheckpointTensorInfo> Tensors { get; }
    /// <summary>The tensor for <paramref name="key"/> (a view of the mapped file where possible).</summary>
    Tensor GetTensor(string key);
}

/// <summary>Element types as checkpoint formats name them, including those the runtime cannot use.</summary>
internal static class CheckpointDTypes
{
    public const string SupportedList = "F32, F16, BF16, I8 (with scales), U8 q4 (in a quantised file)";

    private static readonly Dictionary<string, int> SafetensorsSizes = new(StringComparer.Ordinal)
    {
        ["F64"] = 8, ["F32"] = 4, ["F16"] = 2, ["BF16"] = 2,
        ["I64"] = 8, ["I32"] = 4, ["I16"] = 2, ["I8"] = 1,
        ["U64"] = 8, ["U32"] = 4, ["U16"] = 2, ["U8"] = 1,
        ["BOOL"] = 1, ["F8_E4M3"] = 1, ["F8_E5M2"] = 1, ["F8_E8M0"] = 1, ["C64"] = 8,
    };

    public static bool TryGetSafetensorsSize(string name, out int size) => SafetensorsSizes.TryGetValue(name, out size);

    public static DType? FromName(string name) => name switch
    {
        "F32" => DType.F32,
        "F16" => DType.F16,
        "BF16" => DType.BF16,
        "I8" => DType.I8,
        _ => null,
    };

    public static string UnsupportedMessage(string key, string dtypeName) =>
        $"tensor '{key}' has dtype {dtypeName}, which MoeCompiler does not support (supported: {SupportedList})";
}
