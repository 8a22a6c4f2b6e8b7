using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>The instruction-set path a kernel takes. Tests force each one; <c>MOE_CPU_ISA</c> (scalar, avx2,
/// avx512) forces one for a whole process.</summary>
public enum KernelIsa
{
    Scalar,
    /// <summary>256-bit AVX2 with FMA.</summary>
    Avx2,
    /// <summary>512-bit AVX-512F (with BW for the int8/bf16 widening).</summary>
    Avx512,
}

public static class KernelIsaSupport
{
    /// <summary>The widest path this machine runs (before any <c>MOE_CPU_ISA</c> override).</summary>
    public static KernelIsa Best { get; } =
        Avx512F.IsSupported && Avx512BW.IsSupported && Vector512.IsHardwareAccelerated ? KernelIsa.Avx512
        : Avx2.IsSupported && Fma.IsSupported ? KernelIsa.Avx2
        : KernelIsa.Scalar;

    public static bool IsSupported(KernelIsa isa) => isa <= Best;

    /// <summary><see cref="Best"/>, or the path named by <c>MOE_CPU_ISA</c>.</summary>
    public static KernelIsa Default
    {
        get
        {
            string? forced = Environment.GetEnvironmentVariable("MOE_CPU_ISA");
            if (string.IsNullOrWhiteSpace(forced)) return Best;
            if (!Enum.TryParse<KernelIsa>(forced, ignoreCase: true, out var isa) || !Enum.IsDefined(isa))
                throw new InvalidOperationException($"MOE_CPU_ISA={forced}: expected scalar, avx2 or avx512");
            if (!IsSupported(isa)) throw new InvalidOperationException($"MOE_CPU_ISA={forced}: this CPU supports at most {Best}");
            return isa;
        }
    }
}
