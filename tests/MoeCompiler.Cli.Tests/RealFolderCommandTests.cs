using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Tooling;

namespace MoeCompiler.Cli.Tests;

/// <summary>
/// run with checkpoints as people have them: a repository id found in a hub cache the test builds (blobs behind
/// symbolic links), --revision, and --vision-tower for a model folder without the tower's copy. The hub cache is
/// found through HF_HUB_CACHE, set only while a command runs (CliRunner runs one command at a time).
/// </summary>
public sealed class RealFolderCommandTests(TinyWeightsFixture weights) : IClassFixture<TinyWeightsFixture>
{
    private const string Commit = "4444444444444444444444444444444444444444";
    private const string TowerPrefix = "model.image_tower.image_tower.vision_model.";

    private static readonly object EnvironmentGate = new();

    private CliRunner.Result RunWithHub(string hub, params string[] args)
    {
        lock (EnvironmentGate)
        {
            string? before = Environment.GetEnvironmentVariable("HF_HUB_CACHE");
            Environment.SetEnvironmentVariable("HF_HUB_CACHE", hub);
            try { return CliRunner.Run(args); }
            finally { Environment.SetEnvironmentVariable("HF_HUB_CACHE", before); }
        }
    }

    private string MakeHub()
    {
        string hub = weights.Path_("hub-" + Guid.NewGuid().ToString("N"));
        string repo = Path.Combine(hub, "models--acme--tiny-phi-chat");
        string snapshot = Path.Combine(repo, "snapshots", Commit);
        Directory.CreateDirectory(snapshot);
        Directory.CreateDirectory(Path.Combine(repo, "blobs"));
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.Copy(Path.Combine(weights.PhiWeights, "model.safetensors"), Path.Combine(repo, "blobs", "0123abcd"));
        File.CreateSymbolicLink(Path.Combine(snapshot, "model.safetensors"), "../../blobs/0123abcd");
        File.WriteAllText(Path.Combine(repo, "refs", "main"), Commit + "\n");
        return hub;
    }

    /// <summary>The model folder without the tower, and the tower as its own checkpoint (keys vision_model.*).</summary>
    private (string Model, string Tower) Split()
    {
        string model = weights.Path_("towerless-" + Guid.NewGuid().ToString("N"));
        string tower = weights.Path_("tower-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(model);
        Directory.CreateDirectory(tower);
        using var full = CheckpointFolder.Open(weights.PhiWeights);
        var keys = full.Keys.Order(StringComparer.Ordinal).ToArray();
        SafetensorsWriter.Write(Path.Combine(model, "model.safetensors"),
            keys.Where(k => !k.StartsWith(TowerPrefix, StringComparison.Ordinal)).Select(k => KeyValuePair.Create(k, full.GetTensor(k))));
        SafetensorsWriter.Write(Path.Combine(tower, "model.safetensors"),
            keys.Where(k => k.StartsWith(TowerPrefix, StringComparison.Ordinal)).Select(k => KeyValuePair.Create("vision_model." + k[TowerPrefix.Length..], full.GetTensor(k))));
        return (model, tower);
    }

    private string[] Run(string w, params string[] more) =>
        ["run", "TinyPhiChat", "-w", w, "-i", weights.Picture, "-p", "What is it?", "--max-tokens", "4", "--json", .. more];

    [Fact]
    public void RunTakesARepositoryIdFromTheHubCache()
    {
        var local = CliRunner.Run(Run(weights.PhiWeights));
        Assert.Equal(0, local.ExitCode);
        string hub = MakeHub();
        var cached = RunWithHub(hub, Run("acme/tiny-phi-chat"));
        Assert.True(cached.ExitCode == 0, cached.Error);
        Assert.Equal(local.Json().GetProperty("tokenIds").ToString(), cached.Json().GetProperty("tokenIds").ToString());
        Assert.EndsWith(Commit, cached.Json().GetProperty("weights").GetString(), StringComparison.Ordinal);

        var missing = RunWithHub(hub, Run("acme/other"));
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("models--acme--other", missing.Error);
        Assert.Contains("HF_HUB_CACHE", missing.Error);

        var badRevision = RunWithHub(hub, Run("acme/tiny-phi-chat", "--revision", "v3"));
        Assert.Equal(2, badRevision.ExitCode);
        Assert.Contains("revision 'v3' is not in the hub cache", badRevision.Error);
    }

    [Fact]
    public void RunTakesTheVisionTowerFromItsOwnFolderAndSaysSo()
    {
        var local = CliRunner.Run(Run(weights.PhiWeights));
        var (model, tower) = Split();

        var withoutTower = CliRunner.Run(Run(model));
        Assert.Equal(2, withoutTower.ExitCode);
        Assert.Contains("has no vision tower weights", withoutTower.Error);
        Assert.Contains("--vision-tower", withoutTower.Error);

        var split = CliRunner.Run(Run(model, "--vision-tower", tower));
        Assert.True(split.ExitCode == 0, split.Error);
        Assert.Equal(local.Json().GetProperty("tokenIds").ToString(), split.Json().GetProperty("tokenIds").ToString());
        Assert.Equal(tower, split.Json().GetProperty("visionTower").GetString());

        var table = CliRunner.Run("run", "TinyPhiChat", "-w", model, "--vision-tower", tower, "-i", weights.Picture, "-p", "x", "--max-tokens", "2");
        Assert.True(table.ExitCode == 0, table.Error);
        Assert.Contains("vision tower: " + tower, table.Out);
    }

    [Fact]
    public void AVisionTowerForATextOnlyVariantIsRefused()
    {
        var result = CliRunner.Run("run", "TinyMixtralChat", "-w", weights.PhiWeights, "--vision-tower", weights.PhiWeights, "-p", "x");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("text-only", result.Error);
    }
}
