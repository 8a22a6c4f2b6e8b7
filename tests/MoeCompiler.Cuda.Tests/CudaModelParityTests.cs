using MoeCompiler.Runtime.Backends;
using Xunit.Abstractions;

namespace MoeCompiler.Cuda.Tests;

/// <summary>
/// Whole-model parity on the device for every generated tiny variant (MoE-LLaVA StableLM, Qwen, Phi-2, OpenChat and
/// CuMo-Mixtral, image included): the variant with bf16 weights on the GPU against the same variant on
/// <see cref="CpuBackend"/>, through <see cref="Runtime.Generation.TextGenerator"/>: prefill of the spliced prompt
/// (cuBLAS with bf16 activations, tiled attention), then greedy decode steps (GEMV, the MoE layers routed on the
/// device, flash-decoding over a bf16 KV cache, each step one CUDA graph).
/// Every step's logits within the bf16 tolerance 3e-2·|logits|max + 3e-2, the same greedy tokens, and the same
/// experts for every token of every MoE layer and call, except near ties: a token whose choices differ must have
/// routing weights within 5e-2 of the CPU's (the prefill's cuBLAS products round activations to bf16, which can tip
/// a tie), and at most 1 % of the token routings (or 2) may differ.
/// </summary>
public sealed class CudaModelParityTests(ITestOutputHelper output)
{
    private const int Tokens = 6;
    /// <summary>
    /// How close each routing weight must be to the CPU's, and so how close two weights must be for a different choice
    /// to count as a near tie: the bf16 bound of the logits (CuMo's CLIP-MoE routes after 1–2 encoder layers of
    /// bf16-rounded cuBLAS activations; measured drift up to 3.3e-2).
    /// </summary>
    private const double NearTie = 5e-2;

    [CudaTheory]
    [InlineData("tiny-stablelm-moe")]
    [InlineData("tiny-qwen-moe")]
    [InlineData("tiny-phi-moe")]
    [InlineData("tiny-openchat-moe")]
    [InlineData("tiny-cumo-mixtral")]
    public void GeneratedTinyVariantMatchesTheCpuBackend(string variant)
    {
        var want = TinyVariants.Generate(variant, CpuBackend.Shared, Tokens);
        using var gpu = CudaBackend.Create();
        var got = TinyVariants.Generate(variant, gpu, Tokens);

        Assert.Equal(want.StepLogits.Length, got.StepLogits.Length);
        double worst = 0;
        for (int s = 0; s < want.StepLogits.Length; s++)
        {
            float[] w = want.StepLogits[s], g = got.StepLogits[s];
            double tolerance = 3e-2 * TestData.MaxAbs(w) + 3e-2;
            TestData.Close(w, g, tolerance, 0, $"{variant}: logits of step {s}");
            for (int i = 0; i < w.Length; i++) worst = Math.Max(worst, Math.Abs(w[i] - g[i]) / (TestData.MaxAbs(w) + 1e-30));
        }
        Assert.Equal(want.TokenIds, got.TokenIds);

        Assert.Equal(want.Routing.Count, got.Routing.Count);
        int nearTies = 0;
        for (int r = 0; r < want.Routing.Count; r++)
        {
            var (a, b) = (want.Routing[r], got.Routing[r]);
            string where = $"{variant}: routing record {r} ({a.Site} layer {a.Layer}, call {a.Call}, {a.Tokens} tokens)";
            Assert.True((a.Site, a.Layer, a.Call, a.StartPosition, a.Tokens) == (b.Site, b.Layer, b.Call, b.StartPosition, b.Tokens), where + ": different call");
            Assert.Equal(a.IsImageToken, b.IsImageToken);
            for (int t = 0; t < a.Tokens; t++)
            {
                bool same = true;
                for (int j = 0; j < a.TopK; j++)
                {
                    string choice = $"{where}, token {t}, choice {j}: expert {b.Expert(t, j)} weight {b.Weight(t, j)}, expected expert {a.Expert(t, j)} weight {a.Weight(t, j)}";
                    // A near tie may fall the other way: the prefill's cuBLAS products round activations to bf16, the
                    // CPU's do not. The two chosen experts then have (nearly) the same routing weight on both sides.
                    Assert.True(Math.Abs(a.Weight(t, j) - b.Weight(t, j)) <= NearTie, choice);
                    same &= a.Expert(t, j) == b.Expert(t, j);
                }
                if (!same) nearTies++;
            }
        }
        // A handful of near ties among thousands of decisions; a routing bug would flip many.
        int decisions = want.Routing.Sum(r => r.Tokens);
        Assert.True(nearTies <= Math.Max(2, decisions / 100), $"{variant}: {nearTies} of {decisions} token routings differ");

        var graphs = gpu.DecodeGraphs;
        Assert.NotNull(graphs);
        Assert.True(graphs.Enabled, graphs.DisabledReason);
        // Every decode step is one graph launch, except the first, which runs eagerly to upload the expert tables.
        Assert.Equal(Tokens - 1, graphs.Launches + graphs.SetupSteps);
        Assert.True(graphs.Launches >= Tokens - 2, $"{graphs.Launches} graph launches for {Tokens - 1} decode steps");
        output.WriteLine($"{variant} on {gpu.Name} vs {CpuBackend.Shared.Name}: {want.StepLogits.Length} steps, worst |Δlogit| / max|logit| = {worst:0.0000}, " +
                         $"tokens [{string.Join(",", got.TokenIds)}], {want.Routing.Count} routing records, {nearTies} near-tie token routings differ; " +
                         $"{graphs.Launches} decode graph launches ({graphs.Instantiations} instantiations, {graphs.Updates} updates), {graphs.SetupSteps} set-up step(s)");
    }

    /// <summary>The same generation with decode steps as CUDA graphs and eagerly: bit-identical logits, same tokens and routing.</summary>
    [CudaTheory]
    [InlineData("tiny-stablelm-moe")] // DeepSpeed top-2 with capacity (Mixtral routing: DeviceMoeLayerMatchesHostRouting)
    public void GraphDecodeIsBitIdenticalToEagerDecode(string variant)
    {
        TinyVariants.Run eager, graphed;
        using (var gpu = CudaBackend.Create(new CudaBackendOptions { UseGraphs = false }))
            eager = TinyVariants.Generate(variant, gpu, Tokens);
        using (var gpu = CudaBackend.Create())
        {
            graphed = TinyVariants.Generate(variant, gpu, Tokens);
            Assert.True(gpu.DecodeGraphs!.Launches >= Tokens - 2, $"only {gpu.DecodeGraphs.Launches} graph launches; {gpu.DecodeGraphs.DisabledReason}");
        }
        for (int s = 0; s < eager.StepLogits.Length; s++)
            Assert.True(eager.StepLogits[s].SequenceEqual(graphed.StepLogits[s]), $"{variant}: step {s} logits differ between graph and eager decode");
        Assert.Equal(eager.TokenIds, graphed.TokenIds);
        Assert.Equal(eager.Routing.Count, graphed.Routing.Count);
        for (int r = 0; r < eager.Routing.Count; r++)
        {
            Assert.Equal(eager.Routing[r].ChosenExperts, graphed.Routing[r].ChosenExperts);
            Assert.Equal(eager.Routing[r].Weights, graphed.Routing[r].Weights);
        }
    }
}
