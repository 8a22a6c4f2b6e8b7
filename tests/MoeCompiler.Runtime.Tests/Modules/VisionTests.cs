using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;
using static MoeCompiler.Runtime.Tests.Modules.Naive;

namespace MoeCompiler.Runtime.Tests.Modules;

/// <summary>Vision embeddings, encoder layer and CuMo's S2 assembly against plain loops (atol 2e-5, rtol 1e-4).</summary>
public sealed class VisionTests
{
    private const double Atol = 2e-5, Rtol = 1e-4;
    private static readonly IBackend Backend = new CpuBackend(2);

    /// <summary>Conv2d with stride = kernel = patch on [3,S,S] → [(S/p)², C], patches row-major.</summary>
    private static double[] PatchConv(float[] pixels, int size, float[] weight, float[]? bias, int channels, int patch)
    {
        int g = size / patch;
        var y = new double[g * g * channels];
        for (int py = 0; py < g; py++)
            for (int px = 0; px < g; px++)
                for (int o = 0; o < channels; o++)
                {
                    double s = bias is null ? 0 : bias[o];
                    for (int c = 0; c < 3; c++)
                        for (int i = 0; i < patch; i++)
                            for (int j = 0; j < patch; j++)
                                s += weight[((o * 3 + c) * patch + i) * patch + j] * pixels[(c * size + py * patch + i) * size + px * patch + j];
                    y[(py * g + px) * channels + o] = s;
                }
        return y;
    }

    [Fact]
    public void ClipEmbeddingsPrependClassAndAddPositions()
    {
        var r = new Random(161);
        int size = 8, patch = 4, channels = 5, n = 4;
        float[] pixels = RandomArray(r, 3 * size * size), w = RandomArray(r, channels * 3 * patch * patch),
            cls = RandomArray(r, channels), pos = RandomArray(r, (n + 1) * channels);
        var module = new ClipVisionEmbeddings(Backend, Tensor(w, channels, 3, patch, patch), Tensor(cls, channels), Tensor(pos, n + 1, channels), patch);
        var y = module.Forward(new ForwardContext(Backend), Tensor(pixels, 3, size, size));
        var conv = PatchConv(pixels, size, w, null, channels, patch);
        var expected = new double[(n + 1) * channels];
        for (int c = 0; c < channels; c++) expected[c] = cls[c] + pos[c];
        for (int i = 0; i < n * channels; i++) expected[channels + i] = conv[i] + pos[channels + i];
        AssertClose(expected, y, Atol, Rtol);
        var ex = Assert.Throws<ArgumentException>(() => module.Forward(new ForwardContext(Backend), Tensor(new float[3 * 12 * 12], 3, 12, 12)));
        Assert.Contains("position table", ex.Message);
    }

    [Fact]
    public void SiglipEmbeddingsUseConvBiasAndNoClassToken()
    {
        var r = new Random(171);
        int size = 6, patch = 3, channels = 4, n = 4;
        float[] pixels = RandomArray(r, 3 * size * size), w = RandomArray(r, channels * 3 * patch * patch),
            b = RandomArray(r, channels), pos = RandomArray(r, n * channels);
        var module = new SiglipVisionEmbeddings(Backend, Tensor(w, channels, 3, patch, patch), Tensor(b, channels), Tensor(pos, n, channels), patch);
        var y = module.Forward(new ForwardContext(Backend), Tensor(pixels, 3, size, size));
        AssertClose(Add(PatchConv(pixels, size, w, b, channels, patch), D(pos)), y, Atol, Rtol);
        Assert.Throws<ArgumentException>(() => module.Forward(new ForwardContext(Backend), Tensor(new float[3 * 7 * 7], 3, 7, 7)));
    }

    [Fact]
    public void EncoderLayerIsPreNormResidual()
    {
        var r = new Random(181);
        int hidden = 8, heads = 2, headDim = 4, f = 16, rows = 5;
        float[] ln1w = RandomArray(r, hidden), ln1b = RandomArray(r, hidden), ln2w = RandomArray(r, hidden), ln2b = RandomArray(r, hidden);
        float[] wq = RandomArray(r, 64), wk = RandomArray(r, 64), wv = RandomArray(r, 64), wo = RandomArray(r, 64);
        float[] bq = RandomArray(r, 8), bk = RandomArray(r, 8), bv = RandomArray(r, 8), bo = RandomArray(r, 8);
        float[] fc1 = RandomArray(r, f * hidden), b1 = RandomArray(r, f), fc2 = RandomArray(r, hidden * f), b2 = RandomArray(r, hidden);
        var layer = new VisionEncoderLayer<GeluFeedForward>(
            new LayerNorm(Backend, Tensor(ln1w, hidden), Tensor(ln1b, hidden), 1e-5f),
            new EncoderSelfAttention(new Linear(Backend, Tensor(wq, 8, 8), Tensor(bq, 8)), new Linear(Backend, Tensor(wk, 8, 8), Tensor(bk, 8)),
                new Linear(Backend, Tensor(wv, 8, 8), Tensor(bv, 8)), new Linear(Backend, Tensor(wo, 8, 8), Tensor(bo, 8)), heads, headDim),
            new LayerNorm(Backend, Tensor(ln2w, hidden), Tensor(ln2b, hidden), 1e-5f),
            new GeluFeedForward(new Linear(Backend, Tensor(fc1, f, hidden), Tensor(b1, f)), new Linear(Backend, Tensor(fc2, hidden, f), Tensor(b2, hidden)), Activation.QuickGelu));
        var x = RandomArray(r, rows * hidden);
        var input = Tensor(x, rows, hidden);
        var y = layer.Forward(new ForwardContext(Backend), input);

        var h = LayerNorm(D(x), hidden, ln1w, ln1b, 1e-5);
        var a = Attention(Linear(h, rows, wq, bq, 8, 8), Linear(h, rows, wk, bk, 8, 8), Linear(h, rows, wv, bv, 8, 8), rows, rows, heads, heads, headDim, false, 0);
        var x1 = Add(D(x), Linear(a, rows, wo, bo, 8, 8));
        var h2 = LayerNorm(x1, hidden, ln2w, ln2b, 1e-5);
        var m = Linear(Map(Linear(h2, rows, fc1, b1, f, hidden), v => Act(v, Activation.QuickGelu)), rows, fc2, b2, hidden, f);
        AssertClose(Add(x1, m), y, 5e-5, 1e-4);
        Assert.Equal(x, input.ToFloatArray());
    }

    /// <summary>A tiny "tower": patch conv (no bias) of a [3,S,S] image to [g², C], as a plain function.</summary>
    private static double[] TinyTower(double[] pixels, int size, float[] weight, int channels, int patch)
        => PatchConv(Array.ConvertAll(pixels, v => (float)v), size, weight, null, channels, patch);

    [Fact]
    public void S2RunsTheTowerOnTheImageAndOnNineUpsampledTilesThenPoolsAndConcatenates()
    {
        var r = new Random(191);
        int size = 8, patch = 2, channels = 3, g = size / patch, scale = 3, big = size * scale;
        float[] pixels = RandomArray(r, 3 * size * size), w = RandomArray(r, channels * 3 * patch * patch);
        var embed = new SiglipVisionEmbeddings(Backend, Tensor(w, channels, 3, patch, patch), Tensor(new float[channels], channels),
            Tensor(new float[g * g * channels], g * g, channels), patch);
        var ctx = new ForwardContext(Backend);
        int towerCalls = 0;
        var y = MultiScaleVision.EncodeS2(ctx, Tensor(pixels, 3, size, size), size, patch, [1, scale], image =>
        {
            towerCalls++;
            Assert.Equal([3, size, size], image.Shape.ToArray());
            return embed.Forward(ctx, image);
        });
        Assert.Equal(1 + scale * scale, towerCalls);
        Assert.Equal([g * g, 2 * channels], y.Shape.ToArray());

        // Reference: features of the image; the upsampled image's tiles (row-major) through the tower,
        // reassembled into a 12×12 grid, 3×3 average pooled; concatenated on channels.
        var scale1 = TinyTower(D(pixels), size, w, channels, patch);
        var up = Bicubic(D(pixels), 3, size, size, big, big);
        var grid = new double[(g * scale) * (g * scale) * channels];
        for (int ty = 0; ty < scale; ty++)
            for (int tx = 0; tx < scale; tx++)
            {
                var tile = new double[3 * size * size];
                for (int c = 0; c < 3; c++)
                    for (int yy = 0; yy < size; yy++)
                        for (int xx = 0; xx < size; xx++)
                            tile[(c * size + yy) * size + xx] = up[(c * big + ty * size + yy) * big + tx * size + xx];
                var f = TinyTower(tile, size, w, channels, patch);
                for (int gy = 0; gy < g; gy++)
                    for (int gx = 0; gx < g; gx++)
                        for (int c = 0; c < channels; c++)
                            grid[(((ty * g + gy) * g * scale) + tx * g + gx) * channels + c] = f[(gy * g + gx) * channels + c];
            }
        var expected = new double[g * g * 2 * channels];
        for (int py = 0; py < g; py++)
            for (int px = 0; px < g; px++)
                for (int c = 0; c < channels; c++)
                {
                    double s = 0;
                    for (int i = 0; i < scale; i++)
                        for (int j = 0; j < scale; j++) s += grid[(((py * scale + i) * g * scale) + px * scale + j) * channels + c];
                    expected[(py * g + px) * 2 * channels + c] = scale1[(py * g + px) * channels + c];
                    expected[(py * g + px) * 2 * channels + channels + c] = s / (scale * scale);
                }
        AssertClose(expected, y, 1e-4, 1e-4);
    }

    [Fact]
    public void S2RejectsBadInput()
    {
        var ctx = new ForwardContext(Backend);
        var pixels = Tensor(new float[3 * 8 * 8], 3, 8, 8);
        Assert.Throws<ArgumentException>(() => MultiScaleVision.EncodeS2(ctx, pixels, 8, 3, [1, 3], p => p));
        Assert.Throws<ArgumentException>(() => MultiScaleVision.EncodeS2(ctx, pixels, 8, 2, [1, 0], p => p));
        Assert.Throws<ArgumentException>(() => MultiScaleVision.EncodeS2(ctx, pixels, 6, 2, [1, 3], p => p));
        var ex = Assert.Throws<InvalidOperationException>(() =>
            MultiScaleVision.EncodeS2(ctx, pixels, 8, 2, [1, 3], _ => Tensor(new float[6], 2, 3)));
        Assert.Contains("tower returned", ex.Message);
    }
}
