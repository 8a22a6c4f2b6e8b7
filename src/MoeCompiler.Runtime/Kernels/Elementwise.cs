using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>
/// Elementwise kernels on f32 spans, one loop per instruction-set path. The logistic forms avoid tanh:
/// 0.5·(1 + tanh u) = σ(2u), so GELU-tanh = x·σ(2u), quick-GELU = x·σ(1.702x), SiLU = x·σ(x); σ(z) = 1/(1+e^(−z))
/// is exact at both tails (e^(−z) → ∞ gives −0 for x &lt; 0).
/// </summary>
internal static unsafe class Elementwise
{
    public enum Op { Add, Multiply, Scale, GeluErf, GeluTanh, QuickGelu, Silu, SwiGlu }

    /// <summary>y = op(a, b) over n elements (b unused by unary ops; <paramref name="scale"/> for Scale).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Apply(Op op, KernelIsa isa, float* a, float* b, float* y, int n, float scale)
    {
        int i = 0;
        if (isa == KernelIsa.Avx512)
            for (; i + 16 <= n; i += 16)
            {
                var x = Vector512.Load(a + i);
                var r = op switch
                {
                    Op.Add => x + Vector512.Load(b + i),
                    Op.Multiply => x * Vector512.Load(b + i),
                    Op.Scale => x * Vector512.Create(scale),
                    Op.GeluErf => Vector512.Create(0.5f) * x * (Vector512<float>.One + Erf(x * Vector512.Create(Activations.SqrtHalf))),
                    Op.GeluTanh => x / (Vector512<float>.One + Exp(Vector512.Create(-2f * Activations.SqrtTwoOverPi)
                        * Vector512.FusedMultiplyAdd(Vector512.Create(0.044715f) * x * x, x, x))),
                    Op.QuickGelu => x / (Vector512<float>.One + Exp(Vector512.Create(-1.702f) * x)),
                    Op.Silu => x / (Vector512<float>.One + Exp(-x)),
                    _ => x / (Vector512<float>.One + Exp(-x)) * Vector512.Load(b + i),
                };
                r.Store(y + i);
            }
        else if (isa == KernelIsa.Avx2)
            for (; i + 8 <= n; i += 8)
            {
                var x = Vector256.Load(a + i);
                var r = op switch
                {
                    Op.Add => x + Vector256.Load(b + i),
                    Op.Multiply => x * Vector256.Load(b + i),
                    Op.Scale => x * Vector256.Create(scale),
                    Op.GeluErf => Vector256.Create(0.5f) * x * (Vector256<float>.One + Erf(x * Vector256.Create(Activations.SqrtHalf))),
                    Op.GeluTanh => x / (Vector256<float>.One + Exp(Vector256.Create(-2f * Activations.SqrtTwoOverPi)
                        * Vector256.FusedMultiplyAdd(Vector256.Create(0.044715f) * x * x, x, x))),
                    Op.QuickGelu => x / (Vector256<float>.One + Exp(Vector256.Create(-1.702f) * x)),
                    Op.Silu => x / (Vector256<float>.One + Exp(-x)),
                    _ => x / (Vector256<float>.One + Exp(-x)) * Vector256.Load(b + i),
                };
                r.Store(y + i);
            }
        for (; i < n; i++)
        {
            float x = a[i];
            y[i] = op switch
            {
                Op.Add => x + b[i],
                Op.Multiply => x * b[i],
                Op.Scale => x * scale,
                Op.GeluErf => Activations.GeluErf(x),
                Op.GeluTanh => Activations.GeluTanh(x),
                Op.QuickGelu => Activations.QuickGelu(x),
                Op.Silu => Activations.Silu(x),
                _ => Activations.Silu(x) * b[i],
            };
        }
    }

    // e^x for f32 lanes: n = round(x·log₂e), r = x − n·ln2 (split in two constants for exactness), a degree-6
    // polynomial for e^r on [−ln2/2, ln2/2], and 2ⁿ built in the exponent bits. About 1 ulp on [−87.3, 88]; inputs
    // are clamped to that range, so e^(−∞) gives 2⁻¹²⁶ (not 0) and e^(+∞) gives e⁸⁸ (not ∞). Several times
    // faster than Vector512.Exp, which widens to double.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Exp(Vector512<float> x)
    {
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(-87.33654f)), Vector512.Create(88.0f));
        var n = Vector512.Floor(Vector512.FusedMultiplyAdd(x, Vector512.Create(1.44269504088896341f), Vector512.Create(0.5f)));
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-0.693359375f), x);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(2.12194440e-4f), r);
        var p = Vector512.Create(1.9875691500e-4f);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.3981999507e-3f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(8.3334519073e-3f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(4.1665795894e-2f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.6666665459e-1f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(5.0000001201e-1f));
        p = Vector512.FusedMultiplyAdd(p, r * r, r + Vector512<float>.One);
        var scale = Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
        return p * scale;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Exp(Vector256<float> x)
    {
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-87.33654f)), Vector256.Create(88.0f));
        var n = Vector256.Floor(Vector256.FusedMultiplyAdd(x, Vector256.Create(1.44269504088896341f), Vector256.Create(0.5f)));
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-0.693359375f), x);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(2.12194440e-4f), r);
        var p = Vector256.Create(1.9875691500e-4f);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.3981999507e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(8.3334519073e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(4.1665795894e-2f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.6666665459e-1f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(5.0000001201e-1f));
        p = Vector256.FusedMultiplyAdd(p, r * r, r + Vector256<float>.One);
        var scale = Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        return p * scale;
    }

    // The same rational approximation as Activations.Erf, lane-wise.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Erf(Vector512<float> x)
    {
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(-4f)), Vector512.Create(4f));
        var x2 = x * x;
        var p = Vector512.Create(-2.72614225801306e-10f);
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(2.77068142495902e-08f));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(-2.10102402082508e-06f));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(-5.69250639462346e-05f));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(-7.34990630326855e-04f));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(-2.95459980854025e-03f));
        p = Vector512.FusedMultiplyAdd(p, x2, Vector512.Create(-1.60960333262415e-02f));
        var q = Vector512.Create(-1.45660718464996e-05f);
        q = Vector512.FusedMultiplyAdd(q, x2, Vector512.Create(-2.13374055278905e-04f));
        q = Vector512.FusedMultiplyAdd(q, x2, Vector512.Create(-1.68282697438203e-03f));
        q = Vector512.FusedMultiplyAdd(q, x2, Vector512.Create(-7.37332916720468e-03f));
        q = Vector512.FusedMultiplyAdd(q, x2, Vector512.Create(-1.42647390514189e-02f));
        return x * p / q;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Erf(Vector256<float> x)
    {
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(-4f)), Vector256.Create(4f));
        var x2 = x * x;
        var p = Vector256.Create(-2.72614225801306e-10f);
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create(2.77068142495902e-08f));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create(-2.10102402082508e-06f));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create(-5.69250639462346e-05f));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create(-7.34990630326855e-04f));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create(-2.95459980854025e-03f));
        p = Vector256.FusedMultiplyAdd(p, x2, Vector256.Create(-1.60960333262415e-02f));
        var q = Vector256.Create(-1.45660718464996e-05f);
        q = Vector256.FusedMultiplyAdd(q, x2, Vector256.Create(-2.13374055278905e-04f));
        q = Vector256.FusedMultiplyAdd(q, x2, Vector256.Create(-1.68282697438203e-03f));
        q = Vector256.FusedMultiplyAdd(q, x2, Vector256.Create(-7.37332916720468e-03f));
        q = Vector256.FusedMultiplyAdd(q, x2, Vector256.Create(-1.42647390514189e-02f));
        return x * p / q;
    }

    /// <summary>Σ x (8/16 lane partial sums, then a fixed-order horizontal sum).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Sum(KernelIsa isa, float* x, int n, float shift, bool squares)
    {
        int i = 0;
        float sum = 0;
        if (isa == KernelIsa.Avx512)
        {
            var s = Vector512.Create(shift);
            Vector512<float> a0 = default, a1 = default;
            for (; i + 32 <= n; i += 32)
            {
                var d0 = Vector512.Load(x + i) - s;
                var d1 = Vector512.Load(x + i + 16) - s;
                a0 += squares ? d0 * d0 : d0;
                a1 += squares ? d1 * d1 : d1;
            }
            for (; i + 16 <= n; i += 16)
            {
                var d = Vector512.Load(x + i) - s;
                a0 += squares ? d * d : d;
            }
            sum = Vector512.Sum(a0 + a1);
        }
        else if (isa == KernelIsa.Avx2)
        {
            var s = Vector256.Create(shift);
            Vector256<float> a0 = default, a1 = default;
            for (; i + 16 <= n; i += 16)
            {
                var d0 = Vector256.Load(x + i) - s;
                var d1 = Vector256.Load(x + i + 8) - s;
                a0 += squares ? d0 * d0 : d0;
                a1 += squares ? d1 * d1 : d1;
            }
            for (; i + 8 <= n; i += 8)
            {
                var d = Vector256.Load(x + i) - s;
                a0 += squares ? d * d : d;
            }
            sum = Vector256.Sum(a0 + a1);
        }
        for (; i < n; i++)
        {
            float d = x[i] - shift;
            sum += squares ? d * d : d;
        }
        return sum;
    }

    /// <summary>y = (x − shift)·scale ⊙ w (+ b).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Normalize(KernelIsa isa, float* x, float shift, float scale, float* w, float* b, float* y, int n)
    {
        int i = 0;
        if (isa == KernelIsa.Avx512)
        {
            var s = Vector512.Create(shift);
            var k = Vector512.Create(scale);
            for (; i + 16 <= n; i += 16)
            {
                var v = (Vector512.Load(x + i) - s) * k * Vector512.Load(w + i);
                if (b != null) v += Vector512.Load(b + i);
                v.Store(y + i);
            }
        }
        else if (isa == KernelIsa.Avx2)
        {
            var s = Vector256.Create(shift);
            var k = Vector256.Create(scale);
            for (; i + 8 <= n; i += 8)
            {
                var v = (Vector256.Load(x + i) - s) * k * Vector256.Load(w + i);
                if (b != null) v += Vector256.Load(b + i);
                v.Store(y + i);
            }
        }
        for (; i < n; i++) y[i] = (x[i] - shift) * scale * w[i] + (b == null ? 0 : b[i]);
    }

    /// <summary>Softmax of one row (y may be x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Softmax(KernelIsa isa, float* x, float* y, int n)
    {
        float sum = ExpShifted(isa, x, y, n, Max(isa, x, n));
        Apply(Op.Scale, isa, y, null, y, n, 1f / sum);
    }

    /// <summary>The largest of x[0..n) (−∞ for none).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Max(KernelIsa isa, float* x, int n)
    {
        float max = float.NegativeInfinity;
        int i = 0;
        if (isa == KernelIsa.Avx512 && n >= 16)
        {
            var m = Vector512.Create(float.NegativeInfinity);
            for (; i + 16 <= n; i += 16) m = Vector512.Max(m, Vector512.Load(x + i));
            var m256 = Vector256.Max(m.GetLower(), m.GetUpper());
            max = MaxLanes(m256);
        }
        else if (isa == KernelIsa.Avx2 && n >= 8)
        {
            var m = Vector256.Create(float.NegativeInfinity);
            for (; i + 8 <= n; i += 8) m = Vector256.Max(m, Vector256.Load(x + i));
            max = MaxLanes(m);
        }
        for (; i < n; i++) max = Math.Max(max, x[i]);
        return max;
    }

    /// <summary>y[i] = exp(x[i] − shift) for i below n (y may be x); returns their sum, lanes first, then the tail,
    /// in a fixed order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float ExpShifted(KernelIsa isa, float* x, float* y, int n, float shift)
    {
        float sum = 0;
        int i = 0;
        if (isa == KernelIsa.Avx512)
        {
            var s = Vector512.Create(shift);
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= n; i += 16)
            {
                var e = Exp(Vector512.Load(x + i) - s);
                acc += e;
                e.Store(y + i);
            }
            sum = Vector512.Sum(acc);
        }
        else if (isa == KernelIsa.Avx2)
        {
            var s = Vector256.Create(shift);
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8)
            {
                var e = Exp(Vector256.Load(x + i) - s);
                acc += e;
                e.Store(y + i);
            }
            sum = Vector256.Sum(acc);
        }
        for (; i < n; i++)
        {
            float e = MathF.Exp(x[i] - shift);
            sum += e;
            y[i] = e;
        }
        return sum;
    }

    private static float MaxLanes(Vector256<float> m)
    {
        float max = float.NegativeInfinity;
        for (int j = 0; j < 8; j++) max = Math.Max(max, m.GetElement(j));
        return max;
    }
}
