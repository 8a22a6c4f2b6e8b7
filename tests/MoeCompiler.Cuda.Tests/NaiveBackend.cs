using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda.Tests;

/// <summary>
/// An independent host reference for the GPU parity tests: every <see cref="IBackend"/> operation as the plainest
/// loop over f32 (double accumulation where a sum is long), written from the interface's documentation and the
/// PyTorch definitions, sharing no code with the CUDA kernels or the CPU backend.
/// </summary>
internal sealed class NaiveBackend : IBackend
{
    public string Name => "naive";
    public DType KvCacheDType(DType weightDType) => DType.F32;
    public void Dispose() { }

    public Tensor Allocate(DType dtype, params int[] shape) => Tensor.Allocate(dtype, shape);
    public Tensor PrepareWeight(Tensor weight) => weight;
    public void Upload(ReadOnlySpan<float> source, Tensor destination) => source.CopyTo(destination.AsFloats());
    public void Download(Tensor source, Span<float> destination) => source.ToFloatArray().CopyTo(destination);
    public void Copy(Tensor source, Tensor destination) => source.ToFloatArray().CopyTo(destination.AsFloats());

    public void CopyRows(Tensor source, int sourceRow, Tensor destination, int destinationRow, int count)
    {
        float[] src = source.ToFloatArray();
        int cols = source.Columns;
        src.AsSpan(sourceRow * cols, count * cols).CopyTo(destination.AsFloats().Slice(destinationRow * cols, count * cols));
    }

    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        float[] xs = x.ToFloatArray(), w = weight.ToFloatArray();
        float[]? b = bias?.ToFloatArray();
        int m = x.Rows, k = x.Columns, n = weight.Rows;
        var ys = y.AsFloats();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double acc = b?[j] ?? 0;
                for (int p = 0; p < k; p++) acc += (double)xs[i * k + p] * w[j * k + p];
                ys[i * n + j] = (float)acc;
            }
    }

    private static void Map(Tensor x, Tensor y, Func<float, float> f)
    {
        float[] xs = x.ToFloatArray();
        var ys = y.AsFloats();
        for (int i = 0; i < xs.Length; i++) ys[i] = f(xs[i]);
    }

    private static void Zip(Tensor a, Tensor b, Tensor y, Func<float, float, float> f)
    {
        float[] av = a.ToFloatArray(), bv = b.ToFloatArray();
        var ys = y.AsFloats();
        for (int i = 0; i < av.Length; i++) ys[i] = f(av[i], bv[i]);
    }

    public void Add(Tensor a, Tensor b, Tensor y) => Zip(a, b, y, (p, q) => p + q);
    public void Multiply(Tensor a, Tensor b, Tensor y) => Zip(a, b, y, (p, q) => p * q);
    public void Scale(Tensor x, float scale, Tensor y) => Map(x, y, v => v * scale);

    public void LayerNorm(Tensor x, Tensor weight, Tensor? bias, float epsilon, Tensor y)
    {
        float[] xs = x.ToFloatArray(), w = weight.ToFloatArray();
        float[]? b = bias?.ToFloatArray();
        int cols = x.Columns;
        var ys = y.AsFloats();
        for (int r = 0; r < x.Rows; r++)
        {
            double mean = 0, variance = 0;
            for (int c = 0; c < cols; c++) mean += xs[r * cols + c];
            mean /= cols;
            for (int c = 0; c < cols; c++) variance += (xs[r * cols + c] - mean) * (xs[r * cols + c] - mean);
            variance /= cols;
            double inv = 1 / Math.Sqrt(variance + epsilon);
            for (int c = 0; c < cols; c++) ys[r * cols + c] = (float)((xs[r * cols + c] - mean) * inv * w[c] + (b?[c] ?? 0));
        }
    }

    public void RmsNorm(Tensor x, Tensor weight, float epsilon, Tensor y)
    {
        float[] xs = x.ToFloatArray(), w = weight.ToFloatArray();
        int cols = x.Columns;
        var ys = y.AsFloats();
        for (int r = 0; r < x.Rows; r++)
        {
            double squares = 0;
            for (int c = 0; c < cols; c++) squares += (double)xs[r * cols + c] * xs[r * cols + c];
            double inv = 1 / Math.Sqrt(squares / cols + epsilon);
            for (int c = 0; c < cols; c++) ys[r * cols + c] = (float)(xs[r * cols + c] * inv * w[c]);
        }
    }

    public void Rotary(Tensor x, int heads, int headDim, int rotaryDims, float theta, int startPosition)
    {
        var xs = x.AsFloats();
        int half = rotaryDims / 2;
        for (int t = 0; t < x.Rows; t++)
            for (int h = 0; h < heads; h++)
            {
                int at = t * heads * headDim + h * headDim;
                for (int i = 0; i < half; i++)
                {
                    double angle = (startPosition + t) / Math.Pow(theta, 2.0 * i / rotaryDims);
                    double c = Math.Cos(angle), s = Math.Sin(angle);
                    float x1 = xs[at + i], x2 = xs[at + i + half];
                    xs[at + i] = (float)(x1 * c - x2 * s);
                    xs[at + i + half] = (float)(x2 * c + x1 * s);
                }
            }
    }

    public static float Gelu(float v) => (float)(0.5 * v * (1 + Erf(v / Math.Sqrt(2))));

    /// <summary>Abramowitz–Stegun 7.1.26 is too coarse; this is the series/continued-fraction pair, ~1e-15.</summary>
    public static double Erf(double x)
    {
        double ax = Math.Abs(x);
        double result;
        if (ax < 2.5)
        {
            double term = ax, sum = ax;
            for (int n = 1; n < 100; n++)
            {
                term *= -ax * ax / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17) break;
            }
            result = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            // erfc continued fraction (Lentz), converges fast for ax >= 2.5.
            double f = ax, c = ax, d = 0;
            for (int n = 1; n < 200; n++)
            {
                double an = n / 2.0;
                d = ax + an * d;
                d = 1 / d;
                c = ax + an / c;
                double delta = c * d;
                f *= delta;
                if (Math.Abs(delta - 1) < 1e-16) break;
            }
            result = 1 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / f;
        }
        return x < 0 ? -result : result;
    }

    public void Activate(Tensor x, Activation activation, Tensor y) => Map(x, y, v => activation switch
    {
        Activation.GeluErf => Gelu(v),
        Activation.GeluTanh => (float)(0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)))),
        Activation.QuickGelu => (float)(v / (1 + Math.Exp(-1.702 * v))),
        Activation.Silu => (float)(v / (1 + Math.Exp(-v))),
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    });

    public void SwiGlu(Tensor gate, Tensor up, Tensor y) => Zip(gate, up, y, (g, u) => (float)(g / (1 + Math.Exp(-g)) * u));

    public void Softmax(Tensor x, Tensor y)
    {
        float[] xs = x.ToFloatArray();
        int cols = x.Columns;
        var ys = y.AsFloats();
        for (int r = 0; r < x.Rows; r++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int c = 0; c < cols; c++) max = Math.Max(max, xs[r * cols + c]);
            for (int c = 0; c < cols; c++) sum += Math.Exp(xs[r * cols + c] - max);
            for (int c = 0; c < cols; c++) ys[r * cols + c] = (float)(Math.Exp(xs[r * cols + c] - max) / sum);
        }
    }

    public void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor y)
    {
        float[] t = table.ToFloatArray();
        int cols = table.Columns;
        for (int i = 0; i < ids.Length; i++) t.AsSpan(ids[i] * cols, cols).CopyTo(y.AsFloats().Slice(i * cols, cols));
    }

    public void Attention(Tensor q, Tensor k, Tensor v, Tensor y, int heads, int kvHeads, int headDim, bool causal, int queryStart)
    {
        float[] qs = q.ToFloatArray(), ks = k.ToFloatArray(), vs = v.ToFloatArray();
        var ys = y.AsFloats();
        int tk = k.Rows, group = heads / kvHeads, qw = heads * headDim, kw = kvHeads * headDim;
        for (int i = 0; i < q.Rows; i++)
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / group, keys = causal ? Math.Min(tk, queryStart + i + 1) : tk;
                var scores = new double[keys];
                double max = double.NegativeInfinity;
                for (int j = 0; j < keys; j++)
                {
                    double s = 0;
                    for (int d = 0; d < headDim; d++) s += (double)qs[i * qw + h * headDim + d] * ks[j * kw + kvh * headDim + d];
                    scores[j] = s / Math.Sqrt(headDim);
                    max = Math.Max(max, scores[j]);
                }
                double sum = 0;
                for (int j = 0; j < keys; j++) sum += scores[j] = Math.Exp(scores[j] - max);
                for (int d = 0; d < headDim; d++)
                {
                    double acc = 0;
                    for (int j = 0; j < keys; j++) acc += scores[j] * vs[j * kw + kvh * headDim + d];
                    ys[i * qw + h * headDim + d] = (float)(acc / sum);
                }
            }
    }

    public void GatherRows(Tensor source, ReadOnlySpan<int> rows, Tensor destination)
    {
        float[] s = source.ToFloatArray();
        int cols = source.Columns;
        for (int i = 0; i < rows.Length; i++) s.AsSpan(rows[i] * cols, cols).CopyTo(destination.AsFloats().Slice(i * cols, cols));
    }

    public void ScatterAddRows(Tensor source, ReadOnlySpan<int> rows, ReadOnlySpan<float> weights, Tensor destination)
    {
        float[] s = source.ToFloatArray();
        var d = destination.AsFloats();
        int cols = source.Columns;
        for (int i = 0; i < rows.Length; i++)
            for (int c = 0; c < cols; c++) d[rows[i] * cols + c] += weights[i] * s[i * cols + c];
    }

    public void PatchEmbed(Tensor image, Tensor weight, Tensor? bias, int patch, Tensor y)
    {
        float[] img = image.ToFloatArray(), w = weight.ToFloatArray();
        float[]? b = bias?.ToFloatArray();
        int height = image.Dim(1), width = image.Dim(2), channels = weight.Dim(0), gw = width / patch;
        var ys = y.AsFloats();
        for (int n = 0; n < height / patch * gw; n++)
            for (int o = 0; o < channels; o++)
            {
                double acc = b?[o] ?? 0;
                for (int c = 0; c < 3; c++)
                    for (int ky = 0; ky < patch; ky++)
                        for (int kx = 0; kx < patch; kx++)
                            acc += (double)w[((o * 3 + c) * patch + ky) * patch + kx]
                                   * img[(c * height + n / gw * patch + ky) * width + n % gw * patch + kx];
                ys[n * channels + o] = (float)acc;
            }
    }

    public void AvgPool2d(Tensor x, int height, int width, int kernel, Tensor y)
    {
        float[] xs = x.ToFloatArray();
        int channels = x.Columns, ow = width / kernel;
        var ys = y.AsFloats();
        for (int cell = 0; cell < height / kernel * ow; cell++)
            for (int c = 0; c < channels; c++)
            {
                double sum = 0;
                for (int ky = 0; ky < kernel; ky++)
                    for (int kx = 0; kx < kernel; kx++)
                        sum += xs[((cell / ow * kernel + ky) * width + cell % ow * kernel + kx) * channels + c];
                ys[cell * channels + c] = (float)(sum / (kernel * kernel));
            }
    }

    public void UpsampleBicubic(Tensor x, int outHeight, int outWidth, Tensor y)
    {
        float[] xs = x.ToFloatArray();
        int channels = x.Dim(0), height = x.Dim(1), width = x.Dim(2);
        var ys = y.AsFloats();
        const double a = -0.75;
        static double Weight(double t, double a)
        {
            t = Math.Abs(t);
            if (t <= 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
            if (t < 2) return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a;
            return 0;
        }
        for (int c = 0; c < channels; c++)
            for (int oy = 0; oy < outHeight; oy++)
                for (int ox = 0; ox < outWidth; ox++)
                {
                    double sy = (double)height / outHeight * (oy + 0.5) - 0.5, sx = (double)width / outWidth * (ox + 0.5) - 0.5;
                    int iy = (int)Math.Floor(sy), ix = (int)Math.Floor(sx);
                    double acc = 0;
                    for (int r = -1; r <= 2; r++)
                        for (int q = -1; q <= 2; q++)
                        {
                            int py = Math.Clamp(iy + r, 0, height - 1), px = Math.Clamp(ix + q, 0, width - 1);
                            acc += Weight(sy - (iy + r), a) * Weight(sx - (ix + q), a) * xs[(c * height + py) * width + px];
                        }
                    ys[(c * outHeight + oy) * outWidth + ox] = (float)acc;
                }
    }
}
