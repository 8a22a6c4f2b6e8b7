using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.TestSupport;

/// <summary>
/// The test oracle: every backend operation as plain scalar loops, accumulating in double, written for clarity
/// and independent of the optimised kernels (it shares only the dtype decoding of <see cref="Tensor.ToFloatArray"/>).
/// Signatures mirror <see cref="IBackend"/>; inputs and outputs are host tensors, outputs f32.
/// </summary>
public static class ReferenceKernels
{
    public static void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        int m = x.Rows, k = x.Columns, n = weight.Dim(0);
        float[] xs = x.ToFloatArray(), w = weight.ToFloatArray();
        float[]? b = bias?.ToFloatArray();
        var output = y.AsFloats();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = b?[j] ?? 0;
                for (int p = 0; p < k; p++) sum += (double)xs[i * k + p] * w[(long)j * k + p];
                output[i * n + j] = (float)sum;
            }
    }

    public static void Add(Tensor a, Tensor b, Tensor y) => Map2(a, b, y, (p, q) => p + q);
    public static void Multiply(Tensor a, Tensor b, Tensor y) => Map2(a, b, y, (p, q) => p * q);
    public static void Scale(Tensor x, float scale, Tensor y) => Map1(x, y, v => v * scale);

    public static void LayerNorm(Tensor x, Tensor weight, Tensor? bias, float epsilon, Tensor y)
    {
        int rows = x.Rows, width = x.Columns;
        float[] xs = x.ToFloatArray(), w = weight.ToFloatArray();
        float[]? b = bias?.ToFloatArray();
        var output = y.AsFloats();
        for (int r = 0; r < rows; r++)
        {
            double mean = 0, variance = 0;
            for (int i = 0; i < width; i++) mean += xs[r * width + i];
            mean /= width;
            for (int i = 0; i < width; i++) variance += Square(xs[r * width + i] - mean);
            variance /= width;
            double inverse = 1 / Math.Sqrt(variance + epsilon);
            for (int i = 0; i < width; i++)
                output[r * width + i] = (float)((xs[r * width + i] - mean) * inverse * w[i] + (b?[i] ?? 0));
        }
    }

    public static void RmsNorm(Tensor x, Tensor weight, float epsilon, Tensor y)
    {
        int rows = x.Rows, width = x.Columns;
        float[] xs = x.ToFloatArray(), w = weight.ToFloatArray();
        var output = y.AsFloats();
        for (int r = 0; r < rows; r++)
        {
            double meanSquare = 0;
            for (int i = 0; i < width; i++) meanSquare += Square(xs[r * width + i]);
            meanSquare /= width;
            double inverse = 1 / Math.Sqrt(meanSquare + epsilon);
            for (int i = 0; i < width; i++) output[r * width + i] = (float)(xs[r * width + i] * inverse * w[i]);
        }
    }

    public static void Rotary(Tensor x, int heads, int headDim, int rotaryDims, float theta, int startPosition)
    {
        var data = x.AsFloats();
        int rows = x.Rows, half = rotaryDims / 2;
        for (int t = 0; t < rows; t++)
            for (int h = 0; h < heads; h++)
            {
                int head = t * heads * headDim + h * headDim;
                for (int i = 0; i < half; i++)
                {
                    double frequency = Math.Pow(theta, -2.0 * i / rotaryDims);
                    double angle = (startPosition + t) * frequency;
                    double cos = Math.Cos(angle), sin = Math.Sin(angle);
                    double first = data[head + i], second = data[head + i + half];
                    data[head + i] = (float)(first * cos - second * sin);
                    data[head + i + half] = (float)(second * cos + first * sin);
                }
            }
    }

    public static void Activate(Tensor x, Activation activation, Tensor y) => Map1(x, y, v => Activation1(v, activation));

    public static double Activation1(double v, Activation activation) => activation switch
    {
        Activation.GeluErf => 0.5 * v * (1 + Erf(v / Math.Sqrt(2))),
        Activation.GeluTanh => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))),
        Activation.QuickGelu => v / (1 + Math.Exp(-1.702 * v)),
        Activation.Silu => v / (1 + Math.Exp(-v)),
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    public static void SwiGlu(Tensor gate, Tensor up, Tensor y) => Map2(gate, up, y, (g, u) => g / (1 + Math.Exp(-g)) * u);

    public static void Softmax(Tensor x, Tensor y)
    {
        int rows = x.Rows, width = x.Columns;
        float[] xs = x.ToFloatArray();
        var output = y.AsFloats();
        for (int r = 0; r < rows; r++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int i = 0; i < width; i++) max = Math.Max(max, xs[r * width + i]);
            for (int i = 0; i < width; i++) sum += Math.Exp(xs[r * width + i] - max);
            for (int i = 0; i < width; i++) output[r * width + i] = (float)(Math.Exp(xs[r * width + i] - max) / sum);
        }
    }

    public static void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor y)
    {
        float[] t = table.ToFloatArray();
        int width = table.Columns;
        var output = y.AsFloats();
        for (int i = 0; i < ids.Length; i++)
            for (int c = 0; c < width; c++) output[i * width + c] = t[(long)ids[i] * width + c];
    }

    public static void Attention(Tensor q, Tensor k, Tensor v, Tensor y, int heads, int kvHeads, int headDim, bool causal, int queryStart)
    {
        float[] qs = q.ToFloatArray(), ks = k.ToFloatArray(), vs = v.ToFloatArray();
        var output = y.AsFloats();
        int queries = q.Rows, keys = k.Rows, group = heads / kvHeads;
        int qWidth = heads * headDim, kvWidth = kvHeads * headDim;
        double scale = 1 / Math.Sqrt(headDim);
        var scores = new double[keys];
        for (int t = 0; t < queries; t++)
            for (int h = 0; h < heads; h++)
            {
                int kvHead = h / group;
                int visible = causal ? queryStart + t + 1 : keys;
                double max = double.NegativeInfinity;
                for (int s = 0; s < visible; s++)
                {
                    double dot = 0;
                    for (int d = 0; d < headDim; d++)
                        dot += (double)qs[t * qWidth + h * headDim + d] * ks[s * kvWidth + kvHead * headDim + d];
                    scores[s] = dot * scale;
                    max = Math.Max(max, scores[s]);
                }
                double sum = 0;
                for (int s = 0; s < visible; s++) sum += scores[s] = Math.Exp(scores[s] - max);
                for (int d = 0; d < headDim; d++)
                {
                    double acc = 0;
                    for (int s = 0; s < visible; s++) acc += scores[s] * vs[s * kvWidth + kvHead * headDim + d];
                    output[t * qWidth + h * headDim + d] = (float)(acc / sum);
                }
            }
    }

    public static void GatherRows(Tensor source, ReadOnlySpan<int> rows, Tensor destination)
    {
        float[] s = source.ToFloatArray();
        int width = source.Columns;
        var output = destination.AsFloats();
        for (int i = 0; i < rows.Length; i++)
            for (int c = 0; c < width; c++) output[i * width + c] = s[rows[i] * width + c];
    }

    public static void ScatterAddRows(Tensor source, ReadOnlySpan<int> rows, ReadOnlySpan<float> weights, Tensor destination)
    {
        float[] s = source.ToFloatArray();
        int width = source.Columns;
        var output = destination.AsFloats();
        for (int i = 0; i < rows.Length; i++)
            for (int c = 0; c < width; c++)
                output[rows[i] * width + c] = (float)(output[rows[i] * width + c] + (double)weights[i] * s[i * width + c]);
    }

    public static void PatchEmbed(Tensor image, Tensor weight, Tensor? bias, int patch, Tensor y)
    {
        float[] img = image.ToFloatArray(), w = weight.ToFloatArray();
        float[]? b = bias?.ToFloatArray();
        int channels = image.Dim(0), height = image.Dim(1), width = image.Dim(2), outChannels = weight.Dim(0);
        int gridH = height / patch, gridW = width / patch;
        var output = y.AsFloats();
        for (int py = 0; py < gridH; py++)
            for (int px = 0; px < gridW; px++)
                for (int o = 0; o < outChannels; o++)
                {
                    double sum = b?[o] ?? 0;
                    for (int c = 0; c < channels; c++)
                        for (int i = 0; i < patch; i++)
                            for (int j = 0; j < patch; j++)
                                sum += (double)w[((o * channels + c) * patch + i) * patch + j]
                                     * img[(c * height + py * patch + i) * width + px * patch + j];
                    output[(py * gridW + px) * outChannels + o] = (float)sum;
                }
    }

    public static void AvgPool2d(Tensor x, int height, int width, int kernel, Tensor y)
    {
        float[] xs = x.ToFloatArray();
        int channels = x.Columns, outH = height / kernel, outW = width / kernel;
        var output = y.AsFloats();
        for (int oy = 0; oy < outH; oy++)
            for (int ox = 0; ox < outW; ox++)
                for (int c = 0; c < channels; c++)
                {
                    double sum = 0;
                    for (int i = 0; i < kernel; i++)
                        for (int j = 0; j < kernel; j++)
                            sum += xs[((oy * kernel + i) * width + ox * kernel + j) * channels + c];
                    output[(oy * outW + ox) * channels + c] = (float)(sum / (kernel * kernel));
                }
    }

    /// <summary>PyTorch's bicubic (align_corners=false, A=−0.75): source coordinate scale·(d+½)−½ with
    /// scale = in/out, taps at floor−1..floor+2 clamped to the border, separable cubic-convolution weights.</summary>
    public static void UpsampleBicubic(Tensor x, int outHeight, int outWidth, Tensor y)
    {
        float[] xs = x.ToFloatArray();
        int channels = x.Dim(0), height = x.Dim(1), width = x.Dim(2);
        var output = y.AsFloats();
        for (int c = 0; c < channels; c++)
            for (int oy = 0; oy < outHeight; oy++)
            {
                (int y0, double[] wy) = CubicTaps(height, outHeight, oy);
                for (int ox = 0; ox < outWidth; ox++)
                {
                    (int x0, double[] wx) = CubicTaps(width, outWidth, ox);
                    double sum = 0;
                    for (int i = 0; i < 4; i++)
                    {
                        int sy = Math.Clamp(y0 - 1 + i, 0, height - 1);
                        double row = 0;
                        for (int j = 0; j < 4; j++)
                            row += wx[j] * xs[(c * height + sy) * width + Math.Clamp(x0 - 1 + j, 0, width - 1)];
                        sum += wy[i] * row;
                    }
                    output[(c * outHeight + oy) * outWidth + ox] = (float)sum;
                }
            }
    }

    private static (int Floor, double[] Weights) CubicTaps(int inSize, int outSize, int index)
    {
        const double a = -0.75;
        double source = (double)inSize / outSize * (index + 0.5) - 0.5;
        int floor = (int)Math.Floor(source);
        double t = source - floor;
        static double Near(double d) => ((a + 2) * d - (a + 3)) * d * d + 1;
        static double Far(double d) => ((a * d - 5 * a) * d + 8 * a) * d - 4 * a;
        return (floor, new[] { Far(t + 1), Near(t), Near(1 - t), Far(2 - t) });
    }

    /// <summary>erf in double: 2/√π·e^(−x²)·Σ 2ⁿx^(2n+1)/(1·3···(2n+1)) (all terms positive, so no cancellation).</summary>
    public static double Erf(double x)
    {
        if (x < 0) return -Erf(-x);
        if (x > 6) return 1;
        double term = x, sum = x;
        for (int n = 1; n < 500 && term > sum * 1e-17; n++)
        {
            term *= 2 * x * x / (2 * n + 1);
            sum += term;
        }
        return 2 / Math.Sqrt(Math.PI) * Math.Exp(-x * x) * sum;
    }

    private static double Square(double v) => v * v;

    private static void Map1(Tensor x, Tensor y, Func<double, double> f)
    {
        float[] xs = x.ToFloatArray();
        var output = y.AsFloats();
        for (int i = 0; i < xs.Length; i++) output[i] = (float)f(xs[i]);
    }

    private static void Map2(Tensor a, Tensor b, Tensor y, Func<double, double, double> f)
    {
        float[] p = a.ToFloatArray(), q = b.ToFloatArray();
        var output = y.AsFloats();
        for (int i = 0; i < p.Length; i++) output[i] = (float)f(p[i], q[i]);
    }
}
