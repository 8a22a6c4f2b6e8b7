using MoeCompiler.Models;
using MoeCompiler.Runtime.Checkpoints;

namespace MoeCompiler.Cli.Tests;

/// <summary>Seeded weights for TinyMixtralChat, a text-only variant with the real Mistral vocabulary.</summary>
public sealed class TextOnlyWeightsFixture : IDisposable
{
    public TextOnlyWeightsFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), "moe-cli-text-tests-" + Guid.NewGuid().ToString("N"));
        Weights = Path.Combine(Root, "mixtral-chat");
        CreateResult = CliRunner.Run("create-weights", "TinyMixtralChat", "--out", Weights, "--seed", "5");
    }

    public string Root { get; }
    public string Weights { get; }
    internal CliRunner.Result CreateResult { get; }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

/// <summary>The `moe` commands on a text-only variant: created, listed, inspected, run and chatted with without an image;
/// an image is a bad input (exit 2) reported before any weights load.</summary>
public sealed class TextOnlyCommandTests(TextOnlyWeightsFixture fixture) : IClassFixture<TextOnlyWeightsFixture>
{
    private const string Variant = "TinyMixtralChat";

    [Fact]
    public void CreateWeightsWritesOnlyTheLlmTensors()
    {
        Assert.Equal(0, fixture.CreateResult.ExitCode);
        var manifest = ModelCatalog.Find(Variant)!.Manifest;
        using var checkpoint = CheckpointFolder.Open(fixture.Weights);
        using var bound = WeightBinder.Bind(manifest, checkpoint);
        Assert.True(bound.Contains("model.layers.1.block_sparse_moe.experts.3.w2.weight"));
        Assert.DoesNotContain(manifest.Entries, e => e.Role is WeightRole.Vision or WeightRole.Projector);
    }

    [Fact]
    public void RunWithoutAnImageAnswersTheQuestion()
    {
        var result = CliRunner.Run("run", Variant, "-w", fixture.Weights, "-p", "Name a colour.", "--max-tokens", "4", "--json");
        Assert.Equal(0, result.ExitCode);
        var json = result.Json();
        Assert.Equal(4, json.GetProperty("tokenIds").GetArrayLength());
        // "<s>[INST] Name a colour. [/INST]": BOS, the markers and the question, no image rows.
        Assert.InRange(json.GetProperty("timings").GetProperty("promptTokens").GetInt32(), 8, 20);
        Assert.Equal(0, json.GetProperty("timings").GetProperty("imageTokens").GetInt32());

        var human = CliRunner.Run("run", Variant, "-w", fixture.Weights, "-p", "Hi", "--max-tokens", "2");
        Assert.Equal(0, human.ExitCode);
        Assert.Contains("prompt tokens (0 image)", human.Out);
    }

    [Fact]
    public void AnImageIsABadInputBeforeTheWeightsLoad()
    {
        string picture = Path.Combine(fixture.Root, "any.png");
        // Neither the image nor the weights exist: the text-only check comes first.
        var result = CliRunner.Run("run", Variant, "-w", Path.Combine(fixture.Root, "no-weights"), "-i", picture, "-p", "What is it?");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("TinyMixtralChat is text-only: it takes no image", result.Error);

        var chat = CliRunner.RunWithInput("/quit\n", "chat", Variant, "-w", fixture.Weights, "-i", picture);
        Assert.Equal(2, chat.ExitCode);
        Assert.Contains("TinyMixtralChat is text-only: it takes no image", chat.Error);
    }

    [Fact]
    public void ChatTalksWithoutImagesAndRefusesImageCommands()
    {
        var result = CliRunner.RunWithInput("/image picture.png\nHello\n/quit\n", "chat", Variant, "-w", fixture.Weights, "--max-tokens", "2");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("(text-only)", result.Out);
        Assert.Contains("error: TinyMixtralChat is text-only: it takes no image", result.Out);
        Assert.Contains("assistant> ", result.Out);
        Assert.DoesNotContain("error: ", result.Out.Split("assistant> ")[1]);
    }

    [Fact]
    public void ListAndInspectShowNoTower()
    {
        var list = CliRunner.Run("list", "--json");
        Assert.Equal(0, list.ExitCode);
        var entry = list.Json().EnumerateArray().Single(v => v.GetProperty("name").GetString() == Variant);
        Assert.Equal("none", entry.GetProperty("vision").GetString());

        var inspect = CliRunner.Run("inspect", Variant, "--json");
        Assert.Equal(0, inspect.ExitCode);
        var json = inspect.Json();
        Assert.Equal(ModelCatalog.Find(Variant)!.Manifest.Entries.Count, json.GetProperty("tensors").GetArrayLength());
        var human = CliRunner.Run("inspect", Variant);
        Assert.Equal(0, human.ExitCode);
        Assert.Matches(@"vision\s+none", human.Out);
    }

    [Fact]
    public void RoutingDrawsATextOnlyRunWithoutAnImage()
    {
        string output = Path.Combine(fixture.Root, "routing");
        var result = CliRunner.Run("routing", Variant, "-w", fixture.Weights, "-p", "Hello", "-o", output, "--max-tokens", "2");
        Assert.Equal(0, result.ExitCode);
        Assert.True(File.Exists(output + ".png") && File.Exists(output + ".svg"));
    }
}
