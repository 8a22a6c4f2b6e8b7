using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Families;

/// <summary>Phi-2 specifics.</summary>
public static class PhiFamily
{
    /// <summary>
    /// Phi-2's parallel block: one LayerNorm feeds both attention and MLP, out = (attn(h) + mlp(h)) + x with
    /// h = norm(x), summed in the reference's order. Returns a new tensor; x is not modified.
    /// </summary>
    public static Tensor ParallelResidual<TFeedForward>(ForwardContext ctx, Tensor x, LayerNorm norm,
        CausalSelfAttention attention, TFeedForward mlp) where TFeedForward : IFeedForward
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(norm);
        ArgumentNullException.ThrowIfNull(attention);
        ArgumentNullException.ThrowIfNull(mlp);
        var backend = ctx.Backend;
        var normed = norm.Forward(ctx, x);
        var attended = attention.Forward(ctx, normed);
        var fed = mlp.Forward(ctx, normed);
        ModuleTensors.Release(normed);
        backend.Add(attended, fed, attended);
        ModuleTensors.Release(fed);
        backend.Add(attended, x, attended);
        return attended;
    }
}
