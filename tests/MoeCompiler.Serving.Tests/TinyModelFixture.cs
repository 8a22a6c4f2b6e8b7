using MoeCompiler.Models;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace MoeCompiler.Serving.Tests;

/// <summary>
/// Random weights for the tiny variants (a vision MoE with the real GPT-2 vocabulary, and a text-only MoE), loaded
/// once, and the CLI's demo picture. Every test class that uses them is in one collection: a LoadedModel serves one
/// caller at a time, and the 2-core machine gains nothing from running model tests side by side.
/// </summary>
public sealed class TinyModelFixture : IDisposable
{
    public const string VisionVariant = "TinyPhiChat";
    public const string TextVariant = "TinyMixtralChat";

    public TinyModelFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), "moe-serving-tests-" + Guid.NewGuid().ToString("N"));
        VisionWeights = Write(VisionVariant);
        TextWeights = Write(TextVariant);
        Vision = ModelCatalog.Find(VisionVariant)!.Open(VisionWeights);
        Text = ModelCatalog.Find(TextVariant)!.Open(TextWeights);
        using var resource = typeof(MoeCompiler.Cli.MoeCommandLine).Assembly.GetManifestResourceStream("MoeCompiler.Cli.Assets.demo.png")!;
        using var memory = new MemoryStream();
        resource.CopyTo(memory);
        Picture = memory.ToArray();
        PicturePath = Path.Combine(Root, "picture.png");
        File.WriteAllBytes(PicturePath, Picture);
    }

    public string Root { get; }
    public string VisionWeights { get; }
    public string TextWeights { get; }
    public LoadedModel Vision { get; }
    public LoadedModel Text { get; }
    /// <summary>A PNG (the CLI's demo picture).</summary>
    public byte[] Picture { get; }
    public string PicturePath { get; }
    public string PictureDataUrl => "data:image/png;base64," + Convert.ToBase64String(Picture);

    private string Write(string variant)
    {
        string folder = Path.Combine(Root, variant);
        Directory.CreateDirectory(folder);
        RandomCheckpoint.Write(ModelCatalog.Find(variant)!.Manifest, Path.Combine(folder, "model.safetensors"), seed: 7, DType.F32);
        return folder;
    }

    public void Dispose()
    {
        Vision.Dispose();
        Text.Dispose();
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

[CollectionDefinition(Name)]
public sealed class TinyModelCollection : ICollectionFixture<TinyModelFixture>
{
    public const string Name = "tiny models";
}
