namespace MoeCompiler.Runtime.Tensors;

/// <summary>
/// An elementwise activation function, as modules name it to a backend (<c>IBackend.Activate</c>, the fused
/// expert operations) and generated variants name it for their feed-forward layers. It lives beside the tensors,
/// below both <c>Backends</c> and <c>Kernels</c>, so that neither namespace depends on the other: the CPU backend
/// maps it to a kernel op (<c>Elementwise.Op</c>).
/// </summary>
public enum Activation
{
    /// <summary>Exact GELU, 0.5·x·(1 + erf(x/√2)).</summary>
    GeluErf,
    /// <summary>GELU with the tanh approximation (Phi-2, SigLIP).</summary>
    GeluTanh,
    /// <summary>x·σ(1.702·x) (CLIP).</summary>
    QuickGelu,
    /// <summary>x·σ(x).</summary>
    Silu,
}
