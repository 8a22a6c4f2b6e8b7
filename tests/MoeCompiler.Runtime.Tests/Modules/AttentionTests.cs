using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;
using static MoeCompiler.Runtime.Tests.Modules.Naive;

namespace MoeCompiler.Runtime.Tests.Modules;

/// <summary>
/// Causal attention (GQA, partial rotary, KV cache) and encoder attention against plain loops in double.
/// Tolerance atol 2e-5, rtol 1e-4 (f32 kernels, tiny widths).
/// </summary>
public sealed class AttentionTests
{
    private const double Atol = 2e-5, Rtol = 1e-4;
    private static readonly IBackend Backend = new CpuBackend(2);

    private sealed record Weights(int Hidden, AttentionGeometry Geometry, float[] Wq, float[] Bq, float[] Wk, float[] Bk,
        float[] Wv, float[] Bv, float[] Wo)
    {
        public static Weights Random(int seed, int hidden, AttentionGeometry g)
        {
            var r = new Random(seed);
            return new Weights(hidden, g,
                RandomArray(r, g.QueryWidth * hidden, 0.5), RandomArray(r, g.QueryWidth, 0.5),
                RandomArray(r, g.KvWidth * hidden, 0.5), RandomArray(r, g.KvWidth, 0.5),
                RandomArray(r, g.KvWidth * hidden, 0.5), RandomArray(r, g.KvWidth, 0.5),
                RandomArray(r, hidden * g.QueryWidth, 0.5));
        }

        public CausalSelfAttention Module(int layer) => new(
            new Linear(Backend, Tensor(Wq, Geometry.QueryWidth, Hidden), Tensor(Bq, Geometry.QueryWidth)),
            new Linear(Backend, Tensor(Wk, Geometry.KvWidth, Hidden), Tensor(Bk, Geometry.KvWidth)),
            new Linear(Backend, Tensor(Wv, Geometry.KvWidth, Hidden), Tensor(Bv, Geometry.KvWidth)),
            new Linear(Backend, Tensor(Wo, Hidden, Geometry.QueryWidth), null), Geometry, layer);

        /// <summary>The whole sequence at positions 0..T−1, causal: what incremental decoding must reproduce.</summary>
        public double[] Reference(float[] x, int rows)
        {
            var g = Geometry;
            var q = Linear(D(x), rows, Wq, Bq, g.QueryWidth, Hidden);
            var k = Linear(D(x), rows, Wk, Bk, g.KvWidth, Hidden);
            var v = Linear(D(x), rows, Wv, Bv, g.KvWidth, Hidden);
            if (g.RotaryDims > 0)
            {
                Rope(q, rows, g.Heads, g.HeadDim, g.RotaryDims, g.RopeTheta, 0);
                Rope(k, rows, g.KvHeads, g.HeadDim, g.RotaryDims, g.RopeTheta, 0);
            }
            var a = Attention(q, k, v, rows, rows, g.Heads, g.KvHeads, g.HeadDim, causal: true, queryStart: 0);
            return Linear(a, rows, Wo, null, Hidden, g.QueryWidth);
        }
    }

    public static TheoryData<int, int, int, int, float> Geometries => new()
    {
        { 4, 4, 8, 8, 10000f },      // full rotary, MHA (Qwen-like)
        { 4, 2, 8, 8, 1000000f },    // GQA (Mistral-like, theta 1e6)
        { 4, 4, 8, 2, 10000f },      // 25% partial rotary (StableLM-like)
        { 2, 1, 10, 4, 10000f },     // 40% partial rotary, MQA
        { 2, 2, 6, 0, 10000f },      // no rotary
    };

    [Theory]
    [MemberData(nameof(Geometries))]
    public void PrefillThroughCacheMatchesLoops(int heads, int kvHeads, int headDim, int rotary, float theta)
    {
        int hidden = 12, rows = 7;
        var w = Weights.Random(11, hidden, new AttentionGeometry(heads, kvHeads, headDim, rotary, theta));
        var x = RandomArray(new Random(12), rows * hidden);
        var cache = new KvCache(Backend, 3, 16, kvHeads * headDim);
        var ctx = new ForwardContext(Backend, cache);
        var y = w.Module(layer: 2).Forward(ctx, Tensor(x, rows, hidden));
        AssertClose(w.Reference(x, rows), y, Atol, Rtol);
        // Layer 2's cache rows 0..6 hold the rotated keys; other layers are untouched.
        Assert.NotEqual(0f, cache.Keys(2).ToFloatArray().Take(rows * kvHeads * headDim).Select(Math.Abs).Max());
        Assert.All(cache.Keys(0).ToFloatArray(), v => Assert.Equal(0f, v));
    }

    [Theory]
    [MemberData(nameof(Geometries))]
    public void IncrementalDecodingEqualsFullRecompute(int heads, int kvHeads, int headDim, int rotary, float theta)
    {
        int hidden = 12, rows = 9, prefill = 5;
        var w = Weights.Random(21, hidden, new AttentionGeometry(heads, kvHeads, headDim, rotary, theta));
        var x = RandomArray(new Random(22), rows * hidden);
        var expected = w.Reference(x, rows);
        var module = w.Module(layer: 0);
        var cache = new KvCache(Backend, 1, rows, kvHeads * headDim);
        var ctx = new ForwardContext(Backend, cache);
        var outputs = new List<float>();
        outputs.AddRange(module.Forward(ctx, Tensor(x[..(prefill * hidden)], prefill, hidden)).ToFloatArray());
        cache.Length = prefill;
        for (int t = prefill; t < rows; t++)
        {
            ctx.StartPosition = cache.Length;
            outputs.AddRange(module.Forward(ctx, Tensor(x[(t * hidden)..((t + 1) * hidden)], 1, hidden)).ToFloatArray());
            cache.Length++;
        }
        AssertClose(expected, Tensor([.. outputs], rows, hidden), Atol, Rtol);
    }

    [Fact]
    public void WithoutCacheAttendsCausallyOverTheCall()
    {
        int hidden = 8, rows = 4;
        var w = Weights.Random(31, hidden, new AttentionGeometry(2, 1, 4, 4, 10000f));
        var x = RandomArray(new Random(32), rows * hidden);
        AssertClose(w.Reference(x, rows), w.Module(0).Forward(new ForwardContext(Backend), Tensor(x, rows, hidden)), Atol, Rtol);
    }

    [Fact]
    public void CacheOverflowAndBadGeometryGiveClearErrors()
    {
        int hidden = 8;
        var g = new AttentionGeometry(2, 2, 4, 4, 10000f);
        var w = Weights.Random(41, hidden, g);
        var ctx = new ForwardContext(Backend, new KvCache(Backend, 1, 4, g.KvWidth)) { StartPosition = 3 };
        var ex = Assert.Throws<InvalidOperationException>(() => w.Module(0).Forward(ctx, Tensor(new float[2 * hidden], 2, hidden)));
        Assert.Contains("KV cache full", ex.Message);
        var ctx2 = new ForwardContext(Backend, new KvCache(Backend, 1, 4, g.KvWidth));
        Assert.Throws<InvalidOperationException>(() => w.Module(3).Forward(ctx2, Tensor(new float[hidden], 1, hidden)));
        Assert.Throws<ArgumentException>(() => new AttentionGeometry(3, 2, 4, 4, 1f).Validate());
        Assert.Throws<ArgumentException>(() => new AttentionGeometry(2, 2, 4, 3, 1f).Validate());
        Assert.Throws<ArgumentException>(() => new CausalSelfAttention(w.Module(0).Q, w.Module(0).K, w.Module(0).V, w.Module(0).Output,
            new AttentionGeometry(4, 4, 4, 4, 1f), 0));
    }

    [Fact]
    public void EncoderAttentionIsBidirectional()
    {
        var r = new Random(51);
        int hidden = 8, heads = 2, headDim = 4, rows = 5;
        float[] wq = RandomArray(r, 64), bq = RandomArray(r, 8), wk = RandomArray(r, 64), bk = RandomArray(r, 8),
            wv = RandomArray(r, 64), bv = RandomArray(r, 8), wo = RandomArray(r, 64), bo = RandomArray(r, 8);
        var module = new EncoderSelfAttention(new Linear(Backend, Tensor(wq, 8, 8), Tensor(bq, 8)), new Linear(Backend, Tensor(wk, 8, 8), Tensor(bk, 8)),
            new Linear(Backend, Tensor(wv, 8, 8), Tensor(bv, 8)), new Linear(Backend, Tensor(wo, 8, 8), Tensor(bo, 8)), heads, headDim);
        var x = RandomArray(r, rows * hidden);
        var dx = D(x);
        var a = Attention(Linear(dx, rows, wq, bq, 8, 8), Linear(dx, rows, wk, bk, 8, 8), Linear(dx, rows, wv, bv, 8, 8),
            rows, rows, heads, heads, headDim, causal: false, queryStart: 0);
        AssertClose(Linear(a, rows, wo, bo, 8, 8), module.Forward(new ForwardContext(Backend), Tensor(x, rows, hidden)), Atol, Rtol);
    }
}
