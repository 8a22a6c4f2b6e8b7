using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Families;

/// <summary>Qwen-1 specifics.</summary>
public static class QwenFamily
{
    /// <summary>
    /// Qwen stores q, k and v stacked in one <c>attn.c_attn</c> Linear: weight [3H, H], bias [3H], in that order.
    /// Returns three Linears over row views of the same tensors (no copy).
    /// </summary>
    public static (Linear Q, Linear K, Linear V) SplitFusedQkv(IBackend backend, Tensor weight, Tensor? bias)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Rank != 2 || weight.Dim(0) % 3 != 0)
            throw new ArgumentException($"fused c_attn weight {weight} should be [3·H, H]");
        int width = weight.Dim(0) / 3;
        if (bias is not null && (bias.Rank != 1 || bias.Dim(0) != 3 * width))
            throw new ArgumentException($"fused c_attn bias {bias} should be [{3 * width}]");
        Linear Part(int i) => new(backend, weight.SliceRows(i * width, width), bias?.SliceRows(i * width, width));
        return (Part(0), Part(1), Part(2));
    }
}
