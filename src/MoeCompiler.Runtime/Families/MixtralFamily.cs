using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Families;

/// <summary>Mixtral specifics.</summary>
public static class MixtralFamily
{
    /// <summary>
    /// A Mixtral expert <c>w2(silu(w1 x) ⊙ w3 x)</c> as a SwiGLU: gate = w1, up = w3, down = w2 (the numbering is
    /// not the order of use, an easy slip).
    /// </summary>
    public static SwiGluFeedForward Expert(IBackend backend, Tensor w1, Tensor w2, Tensor w3)
        => new(new Linear(backend, w1, null), new Linear(backend, w3, null), new Linear(backend, w2, null));
}
