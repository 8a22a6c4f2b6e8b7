using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Benchmarks;

/// <summary>
/// One StableLM-2-1.6B-sized decoder layer (width 2048, 32 heads × 64, FFN 5632 SwiGLU, bf16 weights) at 600
/// tokens, dense and as a MoE layer (4 experts, top-2), timed part by part, to show that attention and the
/// MoE dispatch (router, top-k, gather, scatter) are small next to the GEMMs.
/// </summary>
internal static class LayerBenchmarks
{
    private const int Tokens = 600, Width = 2048, Heads = 32, HeadDim = 64, Ffn = 5632, Experts = 4, TopKExperts = 2;

    public static void Run(CpuBackend backend, BenchOptions options, Random random)
    {
        Tensor W(int n, int k) => KernelBenchmarks.ToBF16(KernelBenchmarks.RandomTensor(random, n, k));
        var x = KernelBenchmarks.RandomTensor(random, Tokens, Width);
        var normWeight = KernelBenchmarks.RandomTensor(random, Width);
        var normed = Tensor.Allocate(DType.F32, Tokens, Width);
        Tensor wq = W(Width, Width), wk = W(Width, Width), wv = W(Width, Width), wo = W(Width, Width);
        Tensor q = Tensor.Allocate(DType.F32, Tokens, Width), k = Tensor.Allocate(DType.F32, Tokens, Width),
            v = Tensor.Allocate(DType.F32, Tokens, Width), attended = Tensor.Allocate(DType.F32, Tokens, Width),
            projected = Tensor.Allocate(DType.F32, Tokens, Width);
        int reps = options.Quick ? 1 : 3;

        double norm = Timing.Best(reps, () => backend.LayerNorm(x, normWeight, null, 1e-5f, normed));
        double qkv = Timing.Best(reps, () =>
        {
            backend.Linear(normed, wq, null, q);
            backend.Linear(normed, wk, null, k);
            backend.Linear(normed, wv, null, v);
        });
        double rotary = Timing.Best(reps, () =>
        {
            backend.Rotary(q, Heads, HeadDim, 16, 10000f, 0);
            backend.Rotary(k, Heads, HeadDim, 16, 10000f, 0);
        });
        double attention = Timing.Best(reps, () => backend.Attention(q, k, v, attended, Heads, Heads, HeadDim, true, 0));
        double output = Timing.Best(reps, () => backend.Linear(attended, wo, null, projected));
        var oneQuery = q.SliceRows(Tokens - 1, 1);
        var oneOut = attended.SliceRows(0, 1);
        double decodeAttention = Timing.Best(reps * 10, () => backend.Attention(oneQuery, k, v, oneOut, Heads, Heads, HeadDim, true, Tokens - 1));

        // Dense FFN.
        Tensor gate = W(Ffn, Width), up = W(Ffn, Width), down = W(Width, Ffn);
        Tensor g = Tensor.Allocate(DType.F32, Tokens, Ffn), u = Tensor.Allocate(DType.F32, Tokens, Ffn), ffnOut = Tensor.Allocate(DType.F32, Tokens, Width);
        double denseFfn = Timing.Best(reps, () => SwiGluFfn(backend, normed, gate, up, down, g, u, ffnOut));

        // MoE: router, top-2, per-expert gather → FFN → weighted scatter-add.
        Tensor router = W(Experts, Width), logits = Tensor.Allocate(DType.F32, Tokens, Experts), probabilities = Tensor.Allocate(DType.F32, Tokens, Experts);
        var experts = Enumerable.Range(0, Experts).Select(_ => (Gate: W(Ffn, Width), Up: W(Ffn, Width), Down: W(Width, Ffn))).ToArray();
        var moeOut = Tensor.Allocate(DType.F32, Tokens, Width);
        var choice = new int[Tokens * TopKExperts];
        var weight = new float[Tokens * TopKExperts];
        var expertRows = Enumerable.Range(0, Experts).Select(_ => new List<int>()).ToArray();
        var expertWeights = Enumerable.Range(0, Experts).Select(_ => new List<float>()).ToArray();
        double routing = 0, expertCompute = 0, dispatch = 0;
        double moeTotal = Timing.Best(reps, () =>
        {
            double start = Timing.Now();
            backend.Linear(normed, router, null, logits);
            backend.Softmax(logits, probabilities);
            TopK.SelectRows(probabilities.AsFloats(), Experts, TopKExperts, choice, weight);
            foreach (var list in expertRows) list.Clear();
            foreach (var list in expertWeights) list.Clear();
            for (int t = 0; t < Tokens; t++)
                for (int j = 0; j < TopKExperts; j++)
                {
                    expertRows[choice[t * TopKExperts + j]].Add(t);
                    expertWeights[choice[t * TopKExperts + j]].Add(weight[t * TopKExperts + j]);
                }
            moeOut.AsFloats().Clear();
            routing = Timing.Now() - start;
            double computeSeconds = 0, dispatchSeconds = 0;
            for (int e = 0; e < Experts; e++)
            {
                int n = expertRows[e].Count;
                if (n == 0) continue;
                var rows = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(expertRows[e]);
                var gathered = Tensor.Allocate(DType.F32, n, Width);
                var result = Tensor.Allocate(DType.F32, n, Width);
                double s0 = Timing.Now();
                backend.GatherRows(normed, rows, gathered);
                double s1 = Timing.Now();
                SwiGluFfn(backend, gathered, experts[e].Gate, experts[e].Up, experts[e].Down,
                    g.SliceRows(0, n), u.SliceRows(0, n), result);
                double s2 = Timing.Now();
                backend.ScatterAddRows(result, rows, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(expertWeights[e]), moeOut);
                double s3 = Timing.Now();
                dispatchSeconds += s1 - s0 + s3 - s2;
                computeSeconds += s2 - s1;
            }
            expertCompute = computeSeconds;
            dispatch = dispatchSeconds;
        });

        double attentionBlock = norm + qkv + rotary + attention + output;
        double denseLayer = attentionBlock + norm + denseFfn;
        double moeLayer = attentionBlock + norm + moeTotal;
        Console.WriteLine($"decoder layer at {Tokens} tokens (width {Width}, {Heads} heads × {HeadDim}, SwiGLU {Ffn}, bf16 weights)");
        Row("  LayerNorm", norm, denseLayer);
        Row("  q, k, v projections", qkv, denseLayer);
        Row("  rotary (q, k)", rotary, denseLayer);
        Row("  attention (causal, 600 keys)", attention, denseLayer);
        Row("  output projection", output, denseLayer);
        Row("  dense SwiGLU FFN", denseFfn, denseLayer);
        Row("  dense layer total", denseLayer, denseLayer);
        Console.WriteLine($"  decode-step attention (1 query over {Tokens} keys): {decodeAttention * 1e3:F3} ms");
        Console.WriteLine($"MoE layer ({Experts} experts, top-{TopKExperts}, {Tokens} tokens; share of the MoE layer's time)");
        Row("  router linear + softmax + top-k + grouping", routing, moeLayer);
        Row("  gather + weighted scatter-add", dispatch, moeLayer);
        Row("  expert FFNs (GEMMs)", expertCompute, moeLayer);
        Row("  attention block", attentionBlock, moeLayer);
        Row("  MoE layer total", moeLayer, moeLayer);
    }

    private static void Row(string label, double seconds, double total)
        => Console.WriteLine($"{label,-46} {seconds * 1e3,9:F2} ms  {seconds / total,6:P1}");

    private static void SwiGluFfn(CpuBackend backend, Tensor x, Tensor gate, Tensor up, Tensor down, Tensor g, Tensor u, Tensor y)
    {
        backend.Linear(x, gate, null, g);
        backend.Linear(x, up, null, u);
        backend.SwiGlu(g, u, g);
        backend.Linear(g, down, null, y);
    }
}
