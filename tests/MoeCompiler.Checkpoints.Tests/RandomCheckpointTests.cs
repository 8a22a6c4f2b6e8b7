using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace MoeCompiler.Checkpoints.Tests;

/// <summary>Seeded random weights: reproducible per key, norms at their identity, the rest N(0, 0.02²).</summary>
public sealed class RandomCheckpointTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "moe-random-" + Guid.NewGuid().ToString("N"));

    private static readonly WeightManifest Manifest = new("Toy",
    [
        new WeightEntry("model.embed_tokens.weight", [300, 40], WeightRole.Embedding),
        new WeightEntry("model.layers.0.input_layernorm.weight", [40], WeightRole.Norm),
        new WeightEntry("model.layers.0.input_layernorm.bias", [40], WeightRole.Norm),
        new WeightEntry("model.layers.0.mlp.fc1.weight", [64, 40], WeightRole.FeedForward),
    ], []);

    [Fact]
    public void SameSeedSameTensorWhateverTheOrder_OtherSeedOtherTensor()
    {
        var entry = Manifest.Entries[3];
        var a = RandomCheckpoint.Create(entry, 11, DType.F32).ToFloatArray();
        var b = RandomCheckpoint.Create(entry, 11, DType.F32).ToFloatArray();
        var c = RandomCheckpoint.Create(entry, 12, DType.F32).ToFloatArray();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        // Another key with the same shape draws another stream.
        var other = RandomCheckpoint.Create(entry with { Key = "model.layers.1.mlp.fc1.weight" }, 11, DType.F32).ToFloatArray();
        Assert.NotEqual(a, other);
    }

    [Fact]
    public void NormsAreIdentityAndTheRestHasTheInitialisationSpread()
    {
        Assert.All(RandomCheckpoint.Create(Manifest.Entries[1], 1, DType.F32).ToFloatArray(), v => Assert.Equal(1f, v));
        Assert.All(RandomCheckpoint.Create(Manifest.Entries[2], 1, DType.F32).ToFloatArray(), v => Assert.Equal(0f, v));
        var values = RandomCheckpoint.Create(Manifest.Entries[0], 1, DType.F32).ToFloatArray();
        double mean = values.Average(v => (double)v);
        double std = Math.Sqrt(values.Average(v => (v - mean) * (v - mean)));
        // 12,000 draws: the sample std is within a few percent of 0.02, the mean within 5 standard errors of 0.
        Assert.InRange(std, 0.019, 0.021);
        Assert.InRange(mean, -5 * 0.02 / Math.Sqrt(values.Length), 5 * 0.02 / Math.Sqrt(values.Length));
    }

    [Fact]
    public void WritesABindableCheckpointInTheRequestedDTypeAndNeverOverwrites()
    {
        Directory.CreateDirectory(_folder);
        string file = Path.Combine(_folder, "model.safetensors");
        RandomCheckpoint.Write(Manifest, file, seed: 3, DType.BF16);
        using (var folder = CheckpointFolder.Open(_folder))
        using (var bound = WeightBinder.Bind(Manifest, folder))
        {
            Assert.Equal(DType.BF16, bound["model.layers.0.mlp.fc1.weight"].DType);
            var expected = RandomCheckpoint.Create(Manifest.Entries[3], 3, DType.BF16).ToFloatArray();
            Assert.Equal(expected, bound["model.layers.0.mlp.fc1.weight"].ToFloatArray());
        }
        var e = Assert.Throws<CheckpointException>(() => RandomCheckpoint.Write(Manifest, file, seed: 4));
        Assert.Contains("refusing to overwrite", e.Message);
    }

    [Fact]
    public void StreamedChunksGiveTheSameValuesAsTheWholeTensor()
    {
        // Larger than one generation chunk (65,536 values), one of them of odd length.
        var manifest = new WeightManifest("Big", [
            new WeightEntry("a.weight", [300, 401], WeightRole.FeedForward),
            new WeightEntry("b.weight", [131_073], WeightRole.Embedding),
        ], []);
        Directory.CreateDirectory(_folder);
        foreach (var dtype in new[] { DType.F32, DType.BF16, DType.F16 })
        {
            string file = Path.Combine(_folder, $"big-{dtype}.safetensors");
            RandomCheckpoint.Write(manifest, file, seed: 9, dtype);
            using var folder = CheckpointFolder.Open(file);
            using var bound = WeightBinder.Bind(manifest, folder);
            foreach (var entry in manifest.Entries)
                Assert.Equal(RandomCheckpoint.Create(entry, 9, dtype).ToFloatArray(), bound[entry.Key].ToFloatArray());
        }
    }

    [Fact]
    public void AStreamedTensorThatWritesTheWrongLengthLeavesNoFile()
    {
        Directory.CreateDirectory(_folder);
        string file = Path.Combine(_folder, "short.safetensors");
        var tensors = new[] { new StreamedTensor("x", DType.F32, [4], stream => stream.Write(new byte[12])) };
        var e = Assert.Throws<InvalidOperationException>(() => SafetensorsWriter.WriteStreamed(file, tensors));
        Assert.Contains("wrote 12 bytes, its header says 16", e.Message);
        Assert.Empty(Directory.EnumerateFiles(_folder));
    }

    public void Dispose()
    {
        if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
    }
}
