using System.Runtime.CompilerServices;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>Scalar f32 activation functions (the tails of the vector kernels use these too).</summary>
public static class Activations
{
    /// <summary>erf for f32: a rational minimax approximation on [−4, 4] (|error| below 2e-7), ±1 outside.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Erf(float x)
    {
        x = Math.Clamp(x, -4f, 4f);
        float x2 = x * x;
        float p = -2.72614225801306e-10f;
        p = MathF.FusedMultiplyAdd(p, x2, 2.77068142495902e-08f);
        p = MathF.FusedMultiplyAdd(p, x2, -2.10102402082508e-06f);
        p = MathF.FusedMultiplyAdd(p, x2, -5.69250639462346e-05f);
        p = MathF.FusedMultiplyAdd(p, x2, -7.34990630326855e-04f);
        p = MathF.FusedMultiplyAdd(p, x2, -2.95459980854025e-03f);
        p = MathF.FusedMultiplyAdd(p, x2, -1.60960333262415e-02f);
        float q = -1.45660718464996e-05f;
        q = MathF.FusedMultiplyAdd(q, x2, -2.13374055278905e-04f);
        q = MathF.FusedMultiplyAdd(q, x2, -1.68282697438203e-03f);
        q = MathF.FusedMultiplyAdd(q, x2, -7.37332916720468e-03f);
        q = MathF.FusedMultiplyAdd(q, x2, -1.42647390514189e-02f);
        return x * p / q;
    }

    public const float SqrtHalf = 0.70710678118654752f;
    public const float SqrtTwoOverPi = 0.79788456080286536f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float GeluErf(float x) => 0.5f * x * (1f + Erf(x * SqrtHalf));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float GeluTanh(float x) => 0.5f * x * (1f + MathF.Tanh(SqrtTwoOverPi * (x + 0.044715f * x * x * x)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float QuickGelu(float x) => x / (1f + MathF.Exp(-1.702f * x));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Silu(float x) => x / (1f + MathF.Exp(-x));
}
