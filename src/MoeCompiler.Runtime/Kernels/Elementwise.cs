using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MoeCompiler.Runtime.Backends;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>
/// Elementwise kernels on f32 spans, one loop per instruction-set path. The logistic forms avoid tanh:
/// 0.5·(1 + tanh u) = σ(2u), so GELU-tanh = x·σ(2u), quick-GELU = x·σ(1.702x), SiLU = x·σ(x); σ(z) = 1/(1+e^(−z))
/// is exact at both tails (e^(−z) → ∞ gives −0 for x &lt; 0).
/// </summary>
internal static unsafe class Elementwise
{
    public enum Op { Add, Multiply, Scale, GeluErf, GeluTanh, QuickGelu, Silu, SwiGlu }

    public static Op ForActivation(Activation activation) => activation switch
    {
        Activation.GeluErf => Op.GeluErf,
        Activation.GeluTanh => Op.GeluTanh,
        Activation.QuickGelu => Op.QuickGelu,
        Activation.Silu => Op.Silu,
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

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
                    Op.GeluTanh => x / (Vector512<float>.One + Vector512.Exp(Vector512.Create(-2f * Activations.SqrtTwoOverPi)
                        * Vector512.FusedMultiplyAdd(Vector512.Create(0.044715f) * x * x, x, x))),
                    Op.QuickGelu => x / (Vector512<float>.One + Vector512.Exp(Vector512.Create(-1.702f) * x)),
                    Op.Silu => x / (Vector512<float>.One + Vector512.Exp(-x)),
                    _ => x / (Vector512<float>.One + Vector512.Exp(-x)) * Vector512.Load(b + i),
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
                    Op.GeluTanh => x / (Vector256<float>.One + Vector256.Exp(Vector256.Create(-2f * Activations.SqrtTwoOverPi)
                        * Vector256.FusedMultiplyAdd(Vector256.Create(0.044715f) * x * x, x, x))),
                    Op.QuickGelu => x / (Vector256<float>.One + Vector256.Exp(Vector256.Create(-1.702f) * x)),
                    Op.Silu => x / (Vector256<float>.One + Vector256.Exp(-x)),
                    _ => x / (Vector256<float>.One + Vector256.Exp(-x)) * Vector256.Load(b + i),
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

    /// <summary>In-place softmax of one row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Softmax(KernelIsa isa, float* x, float* y, int n)
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

        float sum = 0;
        i = 0;
        if (isa == KernelIsa.Avx512)
        {
            var s = Vector512.Create(max);
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= n; i += 16)
            {
                var e = Vector512.Exp(Vector512.Load(x + i) - s);
                acc += e;
                e.Store(y + i);
            }
            sum = Vector512.Sum(acc);
        }
        else if (isa == KernelIsa.Avx2)
        {
            var s = Vector256.Create(max);
            var acc = Vector256<float>.Zero;
            for (; i + 8 <= n; i += 8)
            {
                var e = Vector256.Exp(Vector256.Load(x + i) - s);
                acc += e;
                e.Store(y + i);
            }
            sum = Vector256.Sum(acc);
        }
        for (; i < n; i++)
        {
            float e = MathF.Exp(x[i] - max);
            sum += e;
            y[i] = e;
        }
        Apply(Op.Scale, isa, y, null, y, n, 1f / sum);
    }

    private static float MaxLanes(Vector256<float> m)
    {
        float max = float.NegativeInfinity;
        for (int j = 0; j < 8; j++) max = Math.Max(max, m.GetElement(j));
        return max;
    }
}
