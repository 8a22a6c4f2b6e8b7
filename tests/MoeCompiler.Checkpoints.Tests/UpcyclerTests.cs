using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace MoeCompiler.Checkpoints.Tests;

public class UpcyclerTests
{
    private const string Router = "model.layers.0.mlp.deepspeed_moe.gate.wg.weight";

    [Fact]
    public void Experts_are_copies_of_the_dense_ffn_and_routers_are_fresh()
    {
        using var temp = new TempFolder();
        using var dense = CheckpointFolder.Open(Fixtures.Path_("torch_stablelm_dense"));
        // the MoE variant's manifest: the layout of the torch_stablelm fixture (MoE in layer 0 of 2)
        var manifest = Fixtures.ManifestOf("torch_stablelm");
        string output = temp.File("model.safetensors");
        var result = Upcycler.Upcycle(dense, manifest, new[] { 0 }, output, new UpcycleOptions { Seed = 7 });
        Assert.Equal(1, result.Routers);
        Assert.Equal(12, result.ExpertTensors);
        Assert.Empty(result.UnusedDenseKeys);

        using var moe = CheckpointFolder.Open(output);
        using var bound = WeightBinder.Bind(manifest, moe); // exactly the variant's keys and shapes
        var expected = Fixtures.Expected("torch_stablelm_dense");
        for (int e = 0; e < 4; e++)
            foreach (var name in new[] { "gate_proj", "up_proj", "down_proj" })
                Fixtures.AssertMatches(expected[$"model.layers.0.mlp.{name}.weight"],
                    bound[$"model.layers.0.mlp.deepspeed_moe.experts.deepspeed_experts.{e}.{name}.weight"]);
        Fixtures.AssertMatches(expected["model.layers.1.mlp.up_proj.weight"], bound["model.layers.1.mlp.up_proj.weight"]);
        Fixtures.AssertMatches(expected["lm_head.weight"], bound["lm_head.weight"]);

        var router = bound[Router];
        Assert.Equal(DType.F32, router.DType);
        Assert.Equal(new[] { 4, 8 }, router.Shape.ToArray());
        float bound8 = 1 / MathF.Sqrt(8);
        Assert.All(router.ToFloatArray(), v => Assert.InRange(v, -bound8, bound8));
        Assert.Equal(Upcycler.InitialiseRouter(Router, 4, 8, 7).ToFloatArray(), router.ToFloatArray());
    }

    [Fact]
    public void Sharded_output_binds_the_same()
    {
        using var temp = new TempFolder();
        using var dense = CheckpointFolder.Open(Fixtures.Path_("torch_stablelm_dense"));
        var manifest = Fixtures.ManifestOf("torch_stablelm");
        var result = Upcycler.Upcycle(dense, manifest, new[] { 0 }, temp.File("moe"), new UpcycleOptions { Seed = 7, MaxShardBytes = 4096 });
        Assert.True(result.Files.Count > 2);
        using var moe = CheckpointFolder.Open(temp.File("moe"));
        using var bound = WeightBinder.Bind(manifest, moe);
        Assert.Equal(Upcycler.InitialiseRouter(Router, 4, 8, 7).ToFloatArray(), bound[Router].ToFloatArray());
        Fixtures.AssertMatches(Fixtures.Expected("torch_stablelm_dense")["model.layers.0.mlp.down_proj.weight"],
            bound["model.layers.0.mlp.deepspeed_moe.experts.deepspeed_experts.2.down_proj.weight"]);
    }

    [Fact]
    public void Router_init_is_seeded_and_follows_nn_linear_default()
    {
        var a = Upcycler.InitialiseRouter("x.mlp.deepspeed_moe.gate.wg.weight", 64, 2048, 1).ToFloatArray();
        var b = Upcycler.InitialiseRouter("x.mlp.deepspeed_moe.gate.wg.weight", 64, 2048, 1).ToFloatArray();
        var c = Upcycler.InitialiseRouter("x.mlp.deepspeed_moe.gate.wg.weight", 64, 2048, 2).ToFloatArray();
        var d = Upcycler.InitialiseRouter("y.mlp.deepspeed_moe.gate.wg.weight", 64, 2048, 1).ToFloatArray();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.NotEqual(a, d);
        // U(-1/sqrt(in), 1/sqrt(in)): mean 0, variance 1/(3 in). 131072 samples: standard error of the mean
        // is 0.0128/362 ≈ 3.5e-5, of the variance ≈ 0.3 %; tolerances are about 5 standard errors.
        double bound = 1 / Math.Sqrt(2048);
        double mean = a.Average(v => (double)v);
        double variance = a.Average(v => (v - mean) * (v - mean));
        Assert.InRange(mean, -2e-4, 2e-4);
        Assert.InRange(variance / (bound * bound / 3), 0.985, 1.015);
        Assert.All(a, v => Assert.InRange(v, -bound, bound));
        Assert.True(a.Max() > 0.99 * bound && a.Min() < -0.99 * bound);
    }

    [Fact]
    public void Problems_are_reported_and_existing_files_kept()
    {
        using var temp = new TempFolder();
        using var dense = CheckpointFolder.Open(Fixtures.Path_("torch_stablelm_dense"));
        var manifest = Fixtures.ManifestOf("torch_stablelm");
        string output = temp.File("model.safetensors");
        File.WriteAllText(output, "keep me");
        var exists = Assert.Throws<CheckpointException>(() => Upcycler.Upcycle(dense, manifest, new[] { 0 }, output));
        Assert.Contains("refusing to overwrite", exists.Message);
        Assert.Equal("keep me", File.ReadAllText(output));

        var wrongLayers = Assert.Throws<CheckpointBindingException>(() => Upcycler.Upcycle(dense, manifest, new[] { 1 }, temp.File("b.safetensors")));
        Assert.Contains(wrongLayers.Problems, p => p.Key == Router && p.Kind == BindingProblemKind.Unexpected);
        Assert.Contains(wrongLayers.Problems, p => p.Kind == BindingProblemKind.Missing && p.Key.Contains("layer 1"));
        Assert.False(File.Exists(temp.File("b.safetensors")));

        // the MoE checkpoint itself is not a dense checkpoint: the dense FFN of layer 0 is missing
        using var notDense = CheckpointFolder.Open(Fixtures.Path_("torch_stablelm"));
        var missing = Assert.Throws<CheckpointBindingException>(() => Upcycler.Upcycle(notDense, manifest, new[] { 0 }, temp.File("c.safetensors")));
        Assert.Contains(missing.Problems, p => p.Key == "model.layers.0.mlp.gate_proj.weight" && p.Kind == BindingProblemKind.Missing);
    }
}
