using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;
using static MoeCompiler.Runtime.Tests.Modules.Naive;

namespace MoeCompiler.Runtime.Tests.Modules;

/// <summary>
/// The MoE layer end to end: y = Σ w·Expert(x) against a dense loop over all experts in double
/// (atol 2e-5, rtol 1e-4); only chosen experts run, once each; routing is recorded.
/// </summary>
public sealed class MoeFeedForwardTests
{
    private const double Atol = 2e-5, Rtol = 1e-4;
    private static readonly IBackend Backend = new CpuBackend(2);

    /// <summary>Wraps an expert and counts how often and on how many rows it runs.</summary>
    private sealed class CountingExpert(IFeedForward inner) : IFeedForward
    {
        public int Calls;
        public int Rows;

        public Tensor Forward(ForwardContext ctx, Tensor x)
        {
            Calls++;
            Rows += x.Rows;
            return inner.Forward(ctx, x);
        }
    }

    private sealed class Layer
    {
        public required int Hidden, Ffn, Experts;
        public required float[] Router;
        public required float[][] Fc1, B1, Fc2, B2;

        public static Layer Random(int seed, int hidden, int ffn, int experts)
        {
            var r = new Random(seed);
            return new Layer
            {
                Hidden = hidden, Ffn = ffn, Experts = experts,
                Router = RandomArray(r, experts * hidden),
                Fc1 = Enumerable.Range(0, experts).Select(_ => RandomArray(r, ffn * hidden, 0.5)).ToArray(),
                B1 = Enumerable.Range(0, experts).Select(_ => RandomArray(r, ffn, 0.5)).ToArray(),
                Fc2 = Enumerable.Range(0, experts).Select(_ => RandomArray(r, hidden * ffn, 0.5)).ToArray(),
                B2 = Enumerable.Range(0, experts).Select(_ => RandomArray(r, hidden, 0.5)).ToArray(),
            };
        }

        public CountingExpert[] Build()
            => Enumerable.Range(0, Experts).Select(e => new CountingExpert(new GeluFeedForward(
                new Linear(Backend, Tensor(Fc1[e], Ffn, Hidden), Tensor(B1[e], Ffn)),
                new Linear(Backend, Tensor(Fc2[e], Hidden, Ffn), Tensor(B2[e], Hidden)), Activation.GeluErf))).ToArray();

        public MoeFeedForward<CountingExpert> Module(CountingExpert[] experts, MoeOptions options, string site = "llm")
            => new(new Linear(Backend, Tensor(Router, Experts, Hidden), null), experts, options, site, 4);

        public double[] Expert(int e, double[] x, int rows)
            => Linear(Map(Linear(x, rows, Fc1[e], B1[e], Ffn, Hidden), v => Act(v, Activation.GeluErf)), rows, Fc2[e], B2[e], Hidden, Ffn);

        /// <summary>Every expert densely on every row, then the weighted sum of the chosen ones.</summary>
        public double[] Reference(float[] x, int rows, int[] chosen, float[] weights, int k)
        {
            var outputs = Enumerable.Range(0, Experts).Select(e => Expert(e, D(x), rows)).ToArray();
            var y = new double[rows * Hidden];
            for (int t = 0; t < rows; t++)
                for (int j = 0; j < k; j++)
                {
                    int e = chosen[t * k + j];
                    if (e < 0) continue;
                    for (int c = 0; c < Hidden; c++) y[t * Hidden + c] += weights[t * k + j] * outputs[e][t * Hidden + c];
                }
            return y;
        }

        /// <summary>Independent routing (double softmax, ranking) when nothing is dropped.</summary>
        public (int[] Chosen, float[] Weights) RouteInDouble(float[] x, int rows, int k)
        {
            var logits = Linear(D(x), rows, Router, null, Experts, Hidden);
            var chosen = new int[rows * k];
            var weights = new float[rows * k];
            for (int t = 0; t < rows; t++)
            {
                var z = logits.Skip(t * Experts).Take(Experts).ToArray();
                double max = z.Max();
                var p = z.Select(v => Math.Exp(v - max)).ToArray();
                double s = p.Sum();
                var rank = Enumerable.Range(0, Experts).OrderByDescending(e => p[e]).ToArray();
                double top = 0;
                for (int j = 0; j < k; j++) top += p[rank[j]] / s;
                for (int j = 0; j < k; j++)
                {
                    chosen[t * k + j] = rank[j];
                    weights[t * k + j] = (float)(p[rank[j]] / s / (k == 1 ? 1 : top));
                }
            }
            return (chosen, weights);
        }
    }

    [Theory]
    [InlineData(MoeRoutingKind.DeepSpeed, 2)]
    [InlineData(MoeRoutingKind.DeepSpeed, 1)]
    [InlineData(MoeRoutingKind.Mixtral, 2)]
    [InlineData(MoeRoutingKind.Mixtral, 3)]
    public void OutputIsTheWeightedSumOfTheChosenExperts(MoeRoutingKind kind, int k)
    {
        int hidden = 8, rows = 13;
        var layer = Layer.Random(91 + k, hidden, 12, 4);
        var experts = layer.Build();
        // Factor 4 keeps every top-1/top-2 assignment (C ≥ S), so the independent router needs no capacity.
        var module = layer.Module(experts, new MoeOptions(4, k, kind, 4.0, 0, SecondExpertPolicy.Deterministic));
        var x = RandomArray(new Random(92), rows * hidden, 2);
        var recorder = new RoutingRecorder();
        var input = Tensor(x, rows, hidden);
        var y = module.Forward(new ForwardContext(Backend) { Routing = recorder }, input);

        var (chosen, weights) = layer.RouteInDouble(x, rows, k);
        var record = Assert.Single(recorder.Records);
        Assert.Equal(chosen, record.ChosenExperts);
        for (int i = 0; i < weights.Length; i++) Assert.Equal(weights[i], record.Weights[i], 1e-5);
        AssertClose(layer.Reference(x, rows, chosen, weights, k), y, Atol, Rtol);
        Assert.Equal(x, input.ToFloatArray());

        // Each expert that got tokens ran once, on exactly its tokens; the total is T·k rows.
        for (int e = 0; e < 4; e++)
        {
            int assigned = chosen.Count(c => c == e);
            Assert.Equal(assigned == 0 ? 0 : 1, experts[e].Calls);
            Assert.Equal(assigned, experts[e].Rows);
        }
        Assert.Equal(rows * k, experts.Sum(e => e.Rows));
    }

    [Fact]
    public void ExpertsNobodyChoseNeverRun()
    {
        int hidden = 6, rows = 10;
        var layer = Layer.Random(101, hidden, 8, 4);
        // Positive inputs and a router row of −5 for experts 2 and 3: they can never be in the top 2.
        for (int c = 0; c < hidden; c++) { layer.Router[2 * hidden + c] = -5; layer.Router[3 * hidden + c] = -5; layer.Router[c] = 1; layer.Router[hidden + c] = 0.5f; }
        var experts = layer.Build();
        var module = layer.Module(experts, new MoeOptions(4, 2, MoeRoutingKind.DeepSpeed, 2.0, 0, SecondExpertPolicy.Deterministic));
        var x = new Random(102).Let(r => Enumerable.Range(0, rows * hidden).Select(_ => (float)r.NextDouble() + 0.1f).ToArray());
        module.Forward(new ForwardContext(Backend), Tensor(x, rows, hidden));
        Assert.Equal(0, experts[2].Calls);
        Assert.Equal(0, experts[3].Calls);
        Assert.Equal(1, experts[0].Calls);
        Assert.Equal(1, experts[1].Calls);
        Assert.Equal(rows, experts[0].Rows);

        // Decoding one token: two experts run on one row each.
        module.Forward(new ForwardContext(Backend) { StartPosition = rows }, Tensor(x[..hidden], 1, hidden));
        Assert.Equal(2, experts[0].Calls);
        Assert.Equal(rows + 1, experts[0].Rows);
        Assert.Equal(0, experts[2].Calls + experts[3].Calls);
    }

    [Fact]
    public void DroppedTokensGetOnlyTheirSurvivingExperts()
    {
        int hidden = 6, rows = 12;
        var layer = Layer.Random(111, hidden, 8, 4);
        var experts = layer.Build();
        var options = new MoeOptions(4, 2, MoeRoutingKind.DeepSpeed, 0.25, 0, SecondExpertPolicy.Deterministic); // C = ceil(3·0.25·2) = 2
        var module = layer.Module(experts, options);
        var x = RandomArray(new Random(112), rows * hidden, 2);
        var recorder = new RoutingRecorder();
        var y = module.Forward(new ForwardContext(Backend) { Routing = recorder }, Tensor(x, rows, hidden));
        var record = Assert.Single(recorder.Records);
        Assert.Contains(-1, record.ChosenExperts);
        for (int e = 0; e < 4; e++) Assert.True(record.ChosenExperts.Count(c => c == e) <= 2);
        AssertClose(layer.Reference(x, rows, record.ChosenExperts, record.Weights, 2), y, Atol, Rtol);
        for (int t = 0; t < rows; t++)
        {
            if (record.Expert(t, 0) >= 0 || record.Expert(t, 1) >= 0) continue;
            for (int c = 0; c < hidden; c++) Assert.Equal(0f, y.AsFloats()[t * hidden + c]); // only the block residual passes
        }
        Assert.Equal(experts.Sum(e => e.Rows), record.ChosenExperts.Count(c => c >= 0));
    }

    [Fact]
    public void SampledRoutingIsReproducibleWithASeed()
    {
        int hidden = 6, rows = 64;
        var layer = Layer.Random(121, hidden, 8, 4);
        var options = new MoeOptions(4, 2, MoeRoutingKind.DeepSpeed, 2.0, 0, SecondExpertPolicy.Sampled);
        var x = RandomArray(new Random(122), rows * hidden, 0.3); // small inputs: near-uniform router, sampling matters
        float[] Run(int seed, RoutingRecorder recorder) => layer.Module(layer.Build(), options)
            .Forward(new ForwardContext(Backend) { Random = new Random(seed), Routing = recorder }, Tensor(x, rows, hidden)).ToFloatArray();
        var (r1, r2, r3) = (new RoutingRecorder(), new RoutingRecorder(), new RoutingRecorder());
        Assert.Equal(Run(7, r1), Run(7, r2));
        Run(8, r3);
        Assert.NotEqual(r1.Records[0].ChosenExperts, r3.Records[0].ChosenExperts);
        var deterministic = new RoutingRecorder();
        layer.Module(layer.Build(), options with { SecondExpert = SecondExpertPolicy.Deterministic })
            .Forward(new ForwardContext(Backend) { Routing = deterministic }, Tensor(x, rows, hidden));
        Assert.NotEqual(deterministic.Records[0].ChosenExperts, r1.Records[0].ChosenExperts);
        for (int t = 0; t < rows; t++) Assert.Equal(deterministic.Records[0].Expert(t, 0), r1.Records[0].Expert(t, 0)); // first choice never sampled
        var ex = Assert.Throws<InvalidOperationException>(() => layer.Module(layer.Build(), options).Forward(new ForwardContext(Backend), Tensor(x, rows, hidden)));
        Assert.Contains("Random", ex.Message);
    }

    [Fact]
    public void PrMoeResidualMixesWithSoftmaxCoefficients()
    {
        int hidden = 6, rows = 5;
        var layer = Layer.Random(131, hidden, 8, 4);
        var r = new Random(132);
        float[] coef = RandomArray(r, 2 * hidden), coefBias = RandomArray(r, 2), d1 = RandomArray(r, 8 * hidden), d2 = RandomArray(r, hidden * 8);
        var dense = new GeluFeedForward(new Linear(Backend, Tensor(d1, 8, hidden), null), new Linear(Backend, Tensor(d2, hidden, 8), null), Activation.GeluErf);
        var options = new MoeOptions(4, 2, MoeRoutingKind.DeepSpeed, 2.0, 0, SecondExpertPolicy.Deterministic);
        var module = new MoeFeedForward<CountingExpert>(new Linear(Backend, Tensor(layer.Router, 4, hidden), null), layer.Build(), options,
            "llm", 0, dense, new Linear(Backend, Tensor(coef, 2, hidden), Tensor(coefBias, 2)));
        var x = RandomArray(r, rows * hidden);
        var recorder = new RoutingRecorder();
        var y = module.Forward(new ForwardContext(Backend) { Routing = recorder }, Tensor(x, rows, hidden));

        var rec = recorder.Records[0];
        var moe = layer.Reference(x, rows, rec.ChosenExperts, rec.Weights, 2);
        var mlp = Linear(Map(Linear(D(x), rows, d1, null, 8, hidden), v => Act(v, Activation.GeluErf)), rows, d2, null, hidden, 8);
        var c = Linear(D(x), rows, coef, coefBias, 2, hidden);
        var expected = new double[rows * hidden];
        for (int t = 0; t < rows; t++)
        {
            double a = Math.Exp(c[2 * t]), b = Math.Exp(c[2 * t + 1]);
            for (int i = 0; i < hidden; i++)
                expected[t * hidden + i] = moe[t * hidden + i] * a / (a + b) + mlp[t * hidden + i] * b / (a + b);
        }
        AssertClose(expected, y, Atol, Rtol);
        Assert.Throws<ArgumentException>(() => new MoeFeedForward<CountingExpert>(new Linear(Backend, Tensor(layer.Router, 4, hidden), null),
            layer.Build(), options, "llm", 0, dense, null));
    }

    [Fact]
    public void ImageMaskIsRecordedForLlmAndImpliedForVisionSites()
    {
        int hidden = 6, rows = 4;
        var layer = Layer.Random(141, hidden, 8, 4);
        var options = new MoeOptions(4, 2, MoeRoutingKind.Mixtral, 1, 0, SecondExpertPolicy.Deterministic);
        var x = Tensor(RandomArray(new Random(142), rows * hidden), rows, hidden);
        var recorder = new RoutingRecorder();
        var ctx = new ForwardContext(Backend) { Routing = recorder, IsImageToken = [false, true, true, false] };
        layer.Module(layer.Build(), options).Forward(ctx, x);
        layer.Module(layer.Build(), options, site: "vision").Forward(ctx, x);
        Assert.Equal([false, true, true, false], recorder.Records[0].IsImageToken);
        Assert.All(recorder.Records[1].IsImageToken, Assert.True);
        ctx.IsImageToken = [true];
        Assert.Throws<InvalidOperationException>(() => layer.Module(layer.Build(), options).Forward(ctx, x));
    }

    [Fact]
    public void ConstructorRejectsInconsistentExperts()
    {
        var layer = Layer.Random(151, 6, 8, 4);
        var router = new Linear(Backend, Tensor(layer.Router, 4, 6), null);
        var options = new MoeOptions(4, 2, MoeRoutingKind.DeepSpeed, 2, 0, SecondExpertPolicy.Deterministic);
        Assert.Throws<ArgumentException>(() => new MoeFeedForward<CountingExpert>(router, layer.Build()[..3], options, "llm", 0));
        Assert.Throws<ArgumentException>(() => new MoeFeedForward<CountingExpert>(router, layer.Build(), options with { Experts = 5 }, "llm", 0));
    }
}

internal static class LetExtension
{
    public static TResult Let<T, TResult>(this T value, Func<T, TResult> f) => f(value);
}

public sealed class MoeProjectorTests
{
    private static readonly IBackend Backend = new CpuBackend(2);

    [Fact]
    public void ExpertsMayChangeTheWidthLikeCuMosMlpMoeProjector()
    {
        // CuMo smoe_mlp: experts Linear(in → out), erf GELU, Linear(out → out); softmax-top-2-renormalise router.
        var r = new Random(161);
        int inWidth = 6, outWidth = 10, rows = 7, experts = 4;
        var router = RandomArray(r, experts * inWidth);
        var w1 = Enumerable.Range(0, experts).Select(_ => RandomArray(r, outWidth * inWidth)).ToArray();
        var w2 = Enumerable.Range(0, experts).Select(_ => RandomArray(r, outWidth * outWidth)).ToArray();
        var moe = new MoeFeedForward<GeluFeedForward>(new Linear(Backend, Tensor(router, experts, inWidth), null),
            Enumerable.Range(0, experts).Select(e => new GeluFeedForward(new Linear(Backend, Tensor(w1[e], outWidth, inWidth), null),
                new Linear(Backend, Tensor(w2[e], outWidth, outWidth), null), Activation.GeluErf)).ToArray(),
            new MoeOptions(experts, 2, MoeRoutingKind.Mixtral, 1, 0, SecondExpertPolicy.Deterministic), RoutingSites.Projector, 0);
        Assert.Equal(outWidth, moe.OutFeatures);
        var x = RandomArray(r, rows * inWidth);
        var recorder = new RoutingRecorder();
        var y = moe.Forward(new ForwardContext(Backend) { Routing = recorder }, Tensor(x, rows, inWidth));
        Assert.Equal([rows, outWidth], y.Shape.ToArray());
        var rec = recorder.Records[0];
        var expected = new double[rows * outWidth];
        for (int e = 0; e < experts; e++)
        {
            var out_ = Linear(Map(Linear(D(x), rows, w1[e], null, outWidth, inWidth), v => Act(v, Activation.GeluErf)), rows, w2[e], null, outWidth, outWidth);
            for (int t = 0; t < rows; t++)
                for (int j = 0; j < 2; j++)
                    if (rec.Expert(t, j) == e)
                        for (int c = 0; c < outWidth; c++) expected[t * outWidth + c] += rec.Weight(t, j) * out_[t * outWidth + c];
        }
        AssertClose(expected, y, 2e-5, 1e-4);
        Assert.All(rec.IsImageToken, Assert.True);
    }
}
