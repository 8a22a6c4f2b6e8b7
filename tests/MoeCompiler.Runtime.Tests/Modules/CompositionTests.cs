using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;
using static MoeCompiler.Runtime.Tests.Modules.Naive;

namespace MoeCompiler.Runtime.Tests.Modules;

/// <summary>
/// Blocks composed the way generated code composes them: a two-layer StableLM-style decoder (LayerNorm, partial
/// rotary, q/k/v bias, SwiGLU; layer 0 a DeepSpeed top-2 MoE with the released eval settings). Decoding token by
/// token through the KV cache must give the same outputs and the same routing as one pass over the whole sequence
/// (atol 1e-5, rtol 1e-4).
/// </summary>
public sealed class CompositionTests
{
    private static readonly IBackend Backend = new CpuBackend(2);
    private const int Hidden = 16, Ffn = 24, Experts = 4;

    private sealed class Block(LayerNorm norm1, CausalSelfAttention attention, LayerNorm norm2, IFeedForward mlp)
    {
        public Tensor Forward(ForwardContext ctx, Tensor x)
        {
            var h = norm1.Forward(ctx, x);
            var a = attention.Forward(ctx, h);
            ctx.Backend.Add(x, a, a);                 // x + attn(ln1 x)
            var h2 = norm2.Forward(ctx, a);
            var m = mlp.Forward(ctx, h2);
            ctx.Backend.Add(a, m, m);                 // + mlp(ln2 ·)
            return m;
        }
    }

    private static Block[] BuildModel(int seed)
    {
        var r = new Random(seed);
        Tensor W(int o, int i) => Tensor(RandomArray(r, o * i, 0.4), o, i);
        Tensor V(int n, double range = 0.2) => Tensor(RandomArray(r, n, range), n);
        Tensor Ones(int n) => Tensor(Enumerable.Repeat(1f, n).ToArray(), n);
        var geometry = new AttentionGeometry(4, 4, 4, 2, 10000f); // half of each 4-dim head rotated
        SwiGluFeedForward Mlp() => new(new Linear(Backend, W(Ffn, Hidden), null), new Linear(Backend, W(Ffn, Hidden), null),
            new Linear(Backend, W(Hidden, Ffn), null));
        var blocks = new Block[2];
        for (int layer = 0; layer < 2; layer++)
        {
            var attention = new CausalSelfAttention(new Linear(Backend, W(Hidden, Hidden), V(Hidden)), new Linear(Backend, W(Hidden, Hidden), V(Hidden)),
                new Linear(Backend, W(Hidden, Hidden), V(Hidden)), new Linear(Backend, W(Hidden, Hidden), null), geometry, layer);
            IFeedForward mlp = layer == 0
                ? new MoeFeedForward<SwiGluFeedForward>(new Linear(Backend, W(Experts, Hidden), null),
                    Enumerable.Range(0, Experts).Select(_ => Mlp()).ToArray(),
                    new MoeOptions(Experts, 2, MoeRoutingKind.DeepSpeed, 2.0, 0, SecondExpertPolicy.Deterministic), RoutingSites.Llm, layer)
                : Mlp();
            blocks[layer] = new Block(new LayerNorm(Backend, Ones(Hidden), V(Hidden), 1e-5f), attention,
                new LayerNorm(Backend, Ones(Hidden), V(Hidden), 1e-5f), mlp);
        }
        return blocks;
    }

    private static float[] Run(Block[] blocks, ForwardContext ctx, float[] x, int rows)
    {
        var h = Tensor(x, rows, Hidden);
        foreach (var block in blocks) h = block.Forward(ctx, h);
        ctx.Cache!.Length = ctx.StartPosition + rows;
        return h.ToFloatArray();
    }

    [Fact]
    public void IncrementalDecodingThroughAnMoeDecoderEqualsOnePass()
    {
        int rows = 10, prefill = 6;
        var x = RandomArray(new Random(201), rows * Hidden);
        var blocks = BuildModel(202);

        var fullRouting = new RoutingRecorder();
        var full = Run(blocks, new ForwardContext(Backend, new KvCache(Backend, 2, rows, Hidden)) { Routing = fullRouting }, x, rows);

        var cache = new KvCache(Backend, 2, rows, Hidden);
        var stepRouting = new RoutingRecorder();
        var ctx = new ForwardContext(Backend, cache) { Routing = stepRouting };
        var outputs = new List<float>(Run(blocks, ctx, x[..(prefill * Hidden)], prefill));
        for (int t = prefill; t < rows; t++)
        {
            ctx.StartPosition = cache.Length;
            outputs.AddRange(Run(blocks, ctx, x[(t * Hidden)..((t + 1) * Hidden)], 1));
        }
        AssertClose(D(full), Tensor([.. outputs], rows, Hidden), 1e-5, 1e-4);

        var expected = fullRouting.Records.Single().ChosenExperts;
        var stepwise = stepRouting.Records.SelectMany(r => r.ChosenExperts).ToArray();
        Assert.Equal(expected, stepwise);
        Assert.Equal(rows - prefill + 1, stepRouting.Records.Count);
        Assert.Equal(Enumerable.Range(0, rows - prefill + 1), stepRouting.Records.Select(r => r.Call));
        Assert.Equal([0, 6, 7, 8, 9], stepRouting.Records.Select(r => r.StartPosition));
        var load = stepRouting.Statistics().Find(RoutingSites.Llm, 0)!;
        Assert.Equal(rows, load.TextTokens);
        Assert.Equal(2L * rows, load.TextAssignments.Sum());
    }
}

public sealed class AttentionGeometryTests
{
    [Theory]
    [InlineData(64, 0.25, 16)]
    [InlineData(80, 0.4, 32)]
    [InlineData(128, 1.0, 128)]
    public void RotaryDimsFollowTheReferenceRounding(int headDim, double fraction, int expected)
        => Assert.Equal(expected, AttentionGeometry.RotaryDimsFromFraction(headDim, fraction));
}
