using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Tests.Modules;

/// <summary>
/// Plain-loop references for the module tests, in double precision on flat row-major arrays, written from the
/// PyTorch definitions and independent of the runtime's kernels.
/// </summary>
internal static class Naive
{
    public static float[] RandomArray(Random random, int length, double range = 1.0)
    {
        var a = new float[length];
        for (int i = 0; i < a.Length; i++) a[i] = (float)((random.NextDouble() * 2 - 1) * range);
        return a;
    }

    public static Tensor Tensor(float[] data, params int[] shape) => Runtime.Tensors.Tensor.FromFloats(data, shape);

    public static double[] Linear(double[] x, int rows, float[] w, float[]? b, int outFeatures, int inFeatures)
    {
        var y = new double[rows * outFeatures];
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < outFeatures; o++)
            {
                double s = b is null ? 0 : b[o];
                for (int i = 0; i < inFeatures; i++) s += x[r * inFeatures + i] * w[o * inFeatures + i];
                y[r * outFeatures + o] = s;
            }
        return y;
    }

    public static double[] D(float[] a) => Array.ConvertAll(a, v => (double)v);

    public static double[] LayerNorm(double[] x, int width, float[] w, float[]? b, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / width; r++)
        {
            double mean = 0, var = 0;
            for (int i = 0; i < width; i++) mean += x[r * width + i];
            mean /= width;
            for (int i = 0; i < width; i++) var += (x[r * width + i] - mean) * (x[r * width + i] - mean);
            var /= width;
            for (int i = 0; i < width; i++)
                y[r * width + i] = (x[r * width + i] - mean) / Math.Sqrt(var + eps) * w[i] + (b is null ? 0 : b[i]);
        }
        return y;
    }

    public static double[] RmsNorm(double[] x, int width, float[] w, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / width; r++)
        {
            double ms = 0;
            for (int i = 0; i < width; i++) ms += x[r * width + i] * x[r * width + i];
            ms /= width;
            for (int i = 0; i < width; i++) y[r * width + i] = x[r * width + i] / Math.Sqrt(ms + eps) * w[i];
        }
        return y;
    }

    /// <summary>Rotate-half RoPE on the first rotaryDims of each head; inv_freq_i = θ^(−2i/rotaryDims).</summary>
    public static void Rope(double[] x, int rows, int heads, int headDim, int rotaryDims, double theta, int start)
    {
        int half = rotaryDims / 2;
        for (int t = 0; t < rows; t++)
            for (int h = 0; h < heads; h++)
            {
                int b = (t * heads + h) * headDim;
                var rotated = new double[rotaryDims];
                for (int i = 0; i < rotaryDims; i++)
                {
                    double angle = (start + t) / Math.Pow(theta, 2.0 * (i % half) / rotaryDims);
                    double partner = i < half ? -x[b + i + half] : x[b + i - half];
                    rotated[i] = x[b + i] * Math.Cos(angle) + partner * Math.Sin(angle);
                }
                for (int i = 0; i < rotaryDims; i++) x[b + i] = rotated[i];
            }
    }

    /// <summary>softmax(q kᵀ/√d) v per head; kv head = head / (heads / kvHeads); query t at position qStart + t.</summary>
    public static double[] Attention(double[] q, double[] k, double[] v, int queries, int keys, int heads, int kvHeads,
        int headDim, bool causal, int queryStart)
    {
        var y = new double[queries * heads * headDim];
        int group = heads / kvHeads;
        for (int t = 0; t < queries; t++)
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / group;
                int visible = causal ? queryStart + t + 1 : keys;
                var scores = new double[visible];
                double max = double.NegativeInfinity;
                for (int s = 0; s < visible; s++)
                {
                    double dot = 0;
                    for (int d = 0; d < headDim; d++)
                        dot += q[(t * heads + h) * headDim + d] * k[(s * kvHeads + kvh) * headDim + d];
                    scores[s] = dot / Math.Sqrt(headDim);
                    max = Math.Max(max, scores[s]);
                }
                double sum = 0;
                for (int s = 0; s < visible; s++) { scores[s] = Math.Exp(scores[s] - max); sum += scores[s]; }
                for (int d = 0; d < headDim; d++)
                {
                    double acc = 0;
                    for (int s = 0; s < visible; s++) acc += scores[s] / sum * v[(s * kvHeads + kvh) * headDim + d];
                    y[(t * heads + h) * headDim + d] = acc;
                }
            }
        return y;
    }

    public static double Silu(double x) => x / (1 + Math.Exp(-x));

    public static double Act(double x, Activation activation) => activation switch
    {
        Activation.Silu => Silu(x),
        Activation.QuickGelu => x / (1 + Math.Exp(-1.702 * x)),
        Activation.GeluTanh => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))),
        Activation.GeluErf => 0.5 * x * (1 + Erf(x / Math.Sqrt(2))),
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    /// <summary>erf by its Maclaurin series (|x| small) or the continued fraction of erfc, to ~1e-12.</summary>
    public static double Erf(double x)
    {
        double ax = Math.Abs(x);
        double result;
        if (ax < 2.5)
        {
            double term = ax, sum = ax, x2 = ax * ax;
            for (int n = 1; n < 200; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17) break;
            }
            result = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            // erfc(x) = exp(−x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
            double f = ax;
            for (int n = 60; n >= 1; n--) f = ax + n / 2.0 / f;
            result = 1 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / f;
        }
        return x < 0 ? -result : result;
    }

    public static double[] Map(double[] x, Func<double, double> f) => Array.ConvertAll(x, v => f(v));

    public static double[] Add(double[] a, double[] b)
    {
        var y = new double[a.Length];
        for (int i = 0; i < a.Length; i++) y[i] = a[i] + b[i];
        return y;
    }

    /// <summary>PyTorch bicubic (align_corners=false, A=−0.75, border-clamped taps) of x[C,H,W] to [C,oh,ow].</summary>
    public static double[] Bicubic(double[] x, int channels, int height, int width, int outHeight, int outWidth)
    {
        static double Cubic(double d)
        {
            const double a = -0.75;
            d = Math.Abs(d);
            if (d <= 1) return ((a + 2) * d - (a + 3)) * d * d + 1;
            if (d < 2) return a * d * d * d - 5 * a * d * d + 8 * a * d - 4 * a;
            return 0;
        }
        var y = new double[channels * outHeight * outWidth];
        for (int c = 0; c < channels; c++)
            for (int oy = 0; oy < outHeight; oy++)
                for (int ox = 0; ox < outWidth; ox++)
                {
                    double sy = (oy + 0.5) * height / outHeight - 0.5, sx = (ox + 0.5) * width / outWidth - 0.5;
                    int fy = (int)Math.Floor(sy), fx = (int)Math.Floor(sx);
                    double acc = 0;
                    for (int i = -1; i <= 2; i++)
                        for (int j = -1; j <= 2; j++)
                        {
                            int yy = Math.Clamp(fy + i, 0, height - 1), xx = Math.Clamp(fx + j, 0, width - 1);
                            acc += Cubic(sy - (fy + i)) * Cubic(sx - (fx + j)) * x[(c * height + yy) * width + xx];
                        }
                    y[(c * outHeight + oy) * outWidth + ox] = acc;
                }
        return y;
    }

    public static void AssertClose(double[] expected, Tensor actual, double atol, double rtol, string what = "")
    {
        var a = actual.ToFloatArray();
        Assert.Equal(expected.Length, a.Length);
        for (int i = 0; i < a.Length; i++)
            if (!(Math.Abs(a[i] - expected[i]) <= atol + rtol * Math.Abs(expected[i])))
                Assert.Fail($"{what} element {i}: expected {expected[i]:R}, got {a[i]:R} (atol {atol}, rtol {rtol})");
    }

    public static void AssertClose(Tensor expected, Tensor actual, double atol, double rtol, string what = "")
        => AssertClose(D(expected.ToFloatArray()), actual, atol, rtol, what);
}
