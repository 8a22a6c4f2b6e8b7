using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Benchmarks;

/// <summary>
/// One StableLM-2-1.6B-sized decoder layer (width 2048, 32 heads × 64, FFN 5632 SwiGLU, bf16 weights) at 600
/// tokens, dense and as a MoE layer (4 experts, DeepSpeed top-2 as MoE-LLaVA routes), built from the runtime's own
/// modules (<see cref="LayerNorm"/>, <see cref="CausalSelfAttention"/>, <see cref="SwiGluFeedForward"/>,
/// <see cref="MoeFeedForward{TExpert}"/>) as generated variants build them, to show that attention and the MoE
/// dispatch (router, top-k, gather, scatter) are small next to the GEMMs.
/// </summary>
internal static class LayerBenchmarks
{
    private const int Tokens = 600, Width = 2048, Heads = 32, HeadDim = 64, RotaryDims = 16, Ffn = 5632, Experts = 4, TopKExperts = 2;

    public static void Run(CpuBackend backend, BenchOptions options, Random random)
    {
        Linear Bf16Linear(int outFeatures, int inFeatures)
            => new(backend, KernelBenchmarks.ToBF16(KernelBenchmarks.RandomTensor(random, outFeatures, inFeatures)), null);
        SwiGluFeedForward SwiGlu() => new(Bf16Linear(Ffn, Width), Bf16Linear(Ffn, Width), Bf16Linear(Width, Ffn));

        var x = KernelBenchmarks.RandomTensor(random, Tokens, Width);
        var norm = new LayerNorm(backend, KernelBenchmarks.RandomTensor(random, Width), null, 1e-5f);
        var geometry = new AttentionGeometry(Heads, Heads, HeadDim, RotaryDims, 10000f);
        var attention = new CausalSelfAttention(Bf16Linear(Width, Width), Bf16Linear(Width, Width), Bf16Linear(Width, Width),
            Bf16Linear(Width, Width), geometry, layerIndex: 0);
        var dense = SwiGlu();
        // MoE-LLaVA's eval capacity factor; the deterministic second choice keeps rounds comparable.
        var moeOptions = new MoeOptions(Experts, TopKExperts, MoeRoutingKind.DeepSpeed, EvalCapacityFactor: 2.0, MinCapacity: 0,
            SecondExpertPolicy.Deterministic);
        var moe = new MoeFeedForward<SwiGluFeedForward>(Bf16Linear(Experts, Width), Enumerable.Range(0, Experts).Select(_ => SwiGlu()).ToArray(),
            moeOptions, RoutingSites.Llm, layerIndex: 0);
        int reps = options.Quick ? 1 : 3;
        var ctx = new ForwardContext(backend);
        var normed = norm.Forward(ctx, x);

        double layerNorm = Timing.Best(reps, () => ModuleTensors.Release(norm.Forward(ctx, x)));
        double attentionBlock = Timing.Best(reps, () => ModuleTensors.Release(attention.Forward(ctx, normed)));
        double decodeAttention = DecodeStepAttention(backend, attention, normed, reps * 10);
        double denseFfn = Timing.Best(reps, () => ModuleTensors.Release(dense.Forward(ctx, normed)));
        double moeTotal = Timing.Best(reps, () => ModuleTensors.Release(moe.Forward(ctx, normed)));

        // The parts of the MoE layer, each through the module the layer itself calls: the router Linear and
        // MoeRouter.Route, then every expert on as many rows as routing gave it. The rest is the dispatch.
        var hostLogits = new float[Tokens * Experts];
        var probabilities = new float[Tokens * Experts];
        var chosen = new int[Tokens * TopKExperts];
        var weights = new float[Tokens * TopKExperts];
        double routing = Timing.Best(reps, () =>
        {
            var logits = moe.Router.Forward(ctx, normed);
            backend.Download(logits, hostLogits);
            ModuleTensors.Release(logits);
            MoeRouter.Route(hostLogits, Tokens, moeOptions, null, chosen, weights, probabilities);
        });
        var rowsPerExpert = new int[Experts];
        foreach (int e in chosen) if (e >= 0) rowsPerExpert[e]++;
        double expertCompute = 0;
        for (int e = 0; e < Experts; e++)
        {
            if (rowsPerExpert[e] == 0) continue;
            var expert = moe.Experts[e];
            var rows = normed.SliceRows(0, rowsPerExpert[e]);
            expertCompute += Timing.Best(reps, () => ModuleTensors.Release(expert.Forward(ctx, rows)));
        }
        // Not clamped: on a busy machine the parts, timed apart, can add up to more than the whole, and a negative
        // rest shows that the run was too noisy to split.
        double dispatch = moeTotal - routing - expertCompute;

        double denseLayer = layerNorm + attentionBlock + layerNorm + denseFfn;
        double moeLayer = layerNorm + attentionBlock + layerNorm + moeTotal;
        Console.WriteLine($"decoder layer at {Tokens} tokens (width {Width}, {Heads} heads × {HeadDim}, SwiGLU {Ffn}, bf16 weights; runtime modules)");
        Row("  LayerNorm", layerNorm, denseLayer);
        Row("  attention block (q, k, v, rotary, causal, out)", attentionBlock, denseLayer);
        Row("  dense SwiGLU FFN", denseFfn, denseLayer);
        Row("  dense layer total", denseLayer, denseLayer);
        Console.WriteLine($"  decode-step attention block (1 token over {Tokens} cached): {decodeAttention * 1e3:F3} ms");
        Console.WriteLine($"MoE layer ({Experts} experts, DeepSpeed top-{TopKExperts}, {Tokens} tokens; share of the MoE layer's time)");
        Row("  router linear + softmax + top-k", routing, moeLayer);
        Row("  rest: grouping, gather, scatter-add (total − parts)", dispatch, moeLayer);
        Row("  expert FFNs (GEMMs)", expertCompute, moeLayer);
        Row("  attention block + norms", layerNorm * 2 + attentionBlock, moeLayer);
        Row("  MoE layer total", moeLayer, moeLayer);
        ModuleTensors.Release(normed);
    }

    /// <summary>The attention module on one new token after a cached prefill of the others, as a decode step runs it.</summary>
    private static double DecodeStepAttention(CpuBackend backend, CausalSelfAttention attention, Tensor normed, int reps)
    {
        var cache = new KvCache(backend, layers: 1, capacity: Tokens, kvWidth: Width);
        var prefill = new ForwardContext(backend, cache) { StartPosition = 0 };
        ModuleTensors.Release(attention.Forward(prefill, normed.SliceRows(0, Tokens - 1)));
        var step = new ForwardContext(backend, cache) { StartPosition = Tokens - 1 };
        var last = normed.SliceRows(Tokens - 1, 1);
        return Timing.Best(reps, () => ModuleTensors.Release(attention.Forward(step, last)));
    }

    private static void Row(string label, double seconds, double total)
        => Console.WriteLine($"{label,-50} {seconds * 1e3,9:F2} ms  {seconds / total,6:P1}");
}
