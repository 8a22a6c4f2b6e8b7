using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cli.Tests;

/// <summary>`moe quantize` and `--dtype int8|q4` as a user runs them (docs/quantization.md).</summary>
public sealed class QuantizeCommandTests(TinyWeightsFixture weights) : IClassFixture<TinyWeightsFixture>
{
    [Theory]
    [InlineData("int8", DType.I8)]
    [InlineData("q4", DType.Q4)]
    public void QuantizeShowsProgressWritesAFolderThatRunLoadsAndNeverOverwrites(string type, DType dtype)
    {
        string output = weights.Path_("phi-" + type);
        var result = CliRunner.Run("quantize", "TinyPhiChat", "-w", weights.PhiWeights, "-o", output, "--type", type);
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("quantize [####################] 100%", result.Out);
        Assert.Contains("quantize [#...................]", result.Out);
        Assert.Contains($"tensors {type}", result.Out);
        using (var folder = CheckpointFolder.Open(output))
        {
            Assert.True(folder.TryGetInfo("model.layers.0.self_attn.q_proj.weight", out var info));
            Assert.Equal(dtype, info.DType);
            // The default tower policy: kept as stored (f32 here) for int8, int8 for q4.
            Assert.True(folder.TryGetInfo("model.image_tower.image_tower.vision_model.encoder.layers.0.mlp.fc1.weight", out var tower));
            Assert.Equal(type == "int8" ? DType.F32 : DType.I8, tower.DType);
            Assert.True(folder.TryGetInfo("model.mm_projector.image_spatial_proj.0.weight", out var projector));
            Assert.Equal(type == "int8" ? DType.F32 : DType.I8, projector.DType);
        }
        Assert.Contains(type == "int8" ? "vision tower and projector kept" : "vision tower and projector int8", result.Out);

        var run = CliRunner.Run("run", "TinyPhiChat", "-w", output, "-i", weights.Picture, "-p", "Describe it.", "--max-tokens", "4", "--json");
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.InRange(run.Json().GetProperty("tokenIds").GetArrayLength(), 1, 4);

        // The folder now holds a checkpoint: a second run refuses and changes nothing.
        var before = Directory.GetFiles(output).ToDictionary(f => f, File.GetLastWriteTimeUtc);
        var again = CliRunner.Run("quantize", "TinyPhiChat", "-w", weights.PhiWeights, "-o", output, "--type", type);
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("refusing to overwrite", again.Error);
        Assert.Equal(before, Directory.GetFiles(output).ToDictionary(f => f, File.GetLastWriteTimeUtc));
    }

    [Fact]
    public void DtypeQuantisesAtLoadOnRunAndBench()
    {
        foreach (string type in new[] { "int8", "q4" })
        {
            var run = CliRunner.Run("run", "TinyPhiChat", "-w", weights.PhiWeights, "-i", weights.Picture, "-p", "Hi", "--max-tokens", "3", "--dtype", type, "--json");
            Assert.True(run.ExitCode == 0, run.Error);
            var bench = CliRunner.Run("bench", "TinyQwenMoe", "--prompt-tokens", "4", "--tokens", "2", "--dtype", type, "--json");
            Assert.True(bench.ExitCode == 0, bench.Error);
            Assert.True(bench.Json().GetProperty("decodeTokensPerSecond").GetDouble() > 0);
        }
    }

    [Fact]
    public void BadTypesAndTargetsAreBadInput()
    {
        var badTower = CliRunner.Run("quantize", "TinyPhiChat", "-w", weights.PhiWeights, "-o", weights.Path_("x"), "--type", "q4", "--tower", "q2");
        Assert.Equal(2, badTower.ExitCode);
        Assert.Contains("--tower must be int8, q4 or keep", badTower.Error);
        var badType = CliRunner.Run("quantize", "TinyPhiChat", "-w", weights.PhiWeights, "-o", weights.Path_("x"), "--type", "q3");
        Assert.Equal(2, badType.ExitCode);
        Assert.Contains("--type must be int8 or q4", badType.Error);
        var badDtype = CliRunner.Run("run", "TinyPhiChat", "-w", weights.PhiWeights, "-p", "x", "--dtype", "int3");
        Assert.Equal(2, badDtype.ExitCode);
        Assert.Contains("int8 or q4", badDtype.Error);
        string file = weights.Path_("a-file");
        File.WriteAllText(file, "keep me");
        var intoFile = CliRunner.Run("quantize", "TinyPhiChat", "-w", weights.PhiWeights, "-o", file, "--type", "q4");
        Assert.Equal(2, intoFile.ExitCode);
        Assert.Equal("keep me", File.ReadAllText(file));
        var missing = CliRunner.Run("quantize", "TinyPhiChat", "-w", weights.Path_("nowhere"), "-o", weights.Path_("y"), "--type", "q4");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("nowhere", missing.Error);
        var createQuantised = CliRunner.Run("create-weights", "TinyPhiChat", "-o", weights.Path_("z"), "--dtype", "q4");
        Assert.Equal(2, createQuantised.ExitCode);
        Assert.Contains("moe quantize", createQuantised.Error);
        // The wrong variant for the weights: every mismatch is named, nothing is written.
        var wrong = CliRunner.Run("quantize", "TinyQwenMoe", "-w", weights.PhiWeights, "-o", weights.Path_("w"), "--type", "q4");
        Assert.Equal(2, wrong.ExitCode);
        Assert.False(Directory.Exists(weights.Path_("w")) && Directory.EnumerateFileSystemEntries(weights.Path_("w")).Any());
    }
}
