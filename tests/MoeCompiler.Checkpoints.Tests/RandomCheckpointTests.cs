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

    /// <summary>A Qwen-named LLM of 12 layers with a CLIP tower of 6: the layer counts the HF rules scale by are read
    /// from the keys.</summary>
    private static readonly WeightManifest QwenLike = new("QwenLike",
    [
        new WeightEntry("transformer.wte.weight", [1000, 256], WeightRole.Embedding),
        new WeightEntry("transformer.h.0.ln_1.weight", [256], WeightRole.Norm),
        new WeightEntry("transformer.h.0.attn.c_attn.weight", [768, 256], WeightRole.Attention),
        new WeightEntry("transformer.h.0.attn.c_attn.bias", [768], WeightRole.Attention),
        new WeightEntry("transformer.h.11.attn.c_proj.weight", [256, 256], WeightRole.Attention),
        new WeightEntry("transformer.h.0.mlp.c_proj.weight", [256, 688], WeightRole.FeedForward),
        new WeightEntry("transformer.h.1.mlp.deepspeed_moe.experts.deepspeed_experts.0.c_proj.weight", [256, 688], WeightRole.Expert),
        new WeightEntry("transformer.h.1.mlp.deepspeed_moe.gate.wg.weight", [4, 256], WeightRole.Router),
        new WeightEntry("transformer.mm_projector.image_spatial_proj.0.weight", [256, 128], WeightRole.Projector),
        new WeightEntry("transformer.mm_projector.image_spatial_proj.0.bias", [256], WeightRole.Projector),
        new WeightEntry("t.vision_model.embeddings.class_embedding", [128], WeightRole.Vision),
        new WeightEntry("t.vision_model.embeddings.patch_embedding.weight", [128, 3, 14, 14], WeightRole.Vision),
        new WeightEntry("t.vision_model.encoder.layers.5.self_attn.q_proj.weight", [128, 128], WeightRole.Vision),
        new WeightEntry("t.vision_model.encoder.layers.5.self_attn.q_proj.bias", [128], WeightRole.Vision),
        new WeightEntry("t.vision_model.encoder.layers.0.self_attn.out_proj.weight", [128, 128], WeightRole.Vision),
        new WeightEntry("t.vision_model.encoder.layers.0.mlp.fc1.weight", [512, 128], WeightRole.Vision),
        new WeightEntry("t.vision_model.encoder.layers.0.mlp.fc2.weight", [128, 512], WeightRole.Vision),
        new WeightEntry("t.vision_model.encoder.layers.0.layer_norm1.weight", [128], WeightRole.Vision),
        new WeightEntry("t.vision_model.encoder.layers.0.layer_norm1.bias", [128], WeightRole.Vision),
    ], []);

    [Fact]
    public void HuggingFaceInitZeroesBiasesAndScalesQwensOutputProjectionsAndTheClipTower()
    {
        // Expected standard deviations written out from the rules (Qwen's QWenPreTrainedModel._init_weights and
        // transformers' CLIPPreTrainedModel._init_weights), not read back from the implementation.
        double llm = 0.02, cProj = 0.02 / Math.Sqrt(2 * 12), d = 128, towerDepth = Math.Sqrt(2 * 6);
        var expected = new Dictionary<string, double>
        {
            ["transformer.wte.weight"] = llm,
            ["transformer.h.0.attn.c_attn.weight"] = llm,
            ["transformer.h.11.attn.c_proj.weight"] = cProj,
            ["transformer.h.0.mlp.c_proj.weight"] = cProj,
            ["transformer.h.1.mlp.deepspeed_moe.experts.deepspeed_experts.0.c_proj.weight"] = cProj,
            ["transformer.h.1.mlp.deepspeed_moe.gate.wg.weight"] = llm,
            ["transformer.mm_projector.image_spatial_proj.0.weight"] = llm,
            ["t.vision_model.embeddings.class_embedding"] = 1 / Math.Sqrt(d),
            ["t.vision_model.embeddings.patch_embedding.weight"] = 0.02,
            ["t.vision_model.encoder.layers.5.self_attn.q_proj.weight"] = 1 / Math.Sqrt(d) / towerDepth,
            ["t.vision_model.encoder.layers.0.self_attn.out_proj.weight"] = 1 / Math.Sqrt(d),
            ["t.vision_model.encoder.layers.0.mlp.fc1.weight"] = 1 / Math.Sqrt(2 * d),
            ["t.vision_model.encoder.layers.0.mlp.fc2.weight"] = 1 / Math.Sqrt(d) / towerDepth,
        };
        var constants = new Dictionary<string, float>
        {
            ["transformer.h.0.ln_1.weight"] = 1f,
            ["transformer.h.0.attn.c_attn.bias"] = 0f,
            ["transformer.mm_projector.image_spatial_proj.0.bias"] = 0f,
            ["t.vision_model.encoder.layers.5.self_attn.q_proj.bias"] = 0f,
            ["t.vision_model.encoder.layers.0.layer_norm1.weight"] = 1f,
            ["t.vision_model.encoder.layers.0.layer_norm1.bias"] = 0f,
        };
        Assert.Equal(QwenLike.Entries.Count, expected.Count + constants.Count);
        foreach (var entry in QwenLike.Entries)
        {
            var values = RandomCheckpoint.Create(QwenLike, entry, 5, DType.F32, InitStyle.HuggingFace).ToFloatArray();
            if (constants.TryGetValue(entry.Key, out float constant))
            {
                Assert.All(values, v => Assert.Equal(constant, v));
                continue;
            }
            double mean = values.Average(v => (double)v);
            double std = Math.Sqrt(values.Average(v => (v - mean) * (v - mean)));
            double want = expected[entry.Key];
            // n ≥ 128 draws: the sample std's relative standard error is 1/sqrt(2n) ≤ 6.3 %; allow 4 of them
            // (25 %) on the smallest, 5 % on the large ones (≥ 16,000 draws: ≤ 0.6 % standard error).
            double tolerance = values.Length >= 16_000 ? 0.05 : 0.25;
            Assert.True(Math.Abs(std / want - 1) <= tolerance, $"{entry.Key}: std {std:G4}, expected {want:G4}");
            Assert.InRange(mean, -5 * want / Math.Sqrt(values.Length), 5 * want / Math.Sqrt(values.Length));
        }
        // The default init is unchanged by the option: biases and c_proj at 0.02, the same values as before.
        var bias = QwenLike.Entries.Single(e => e.Key == "transformer.h.0.attn.c_attn.bias");
        Assert.Equal(RandomCheckpoint.Create(bias, 5, DType.F32).ToFloatArray(),
            RandomCheckpoint.Create(QwenLike, bias, 5, DType.F32, InitStyle.Default).ToFloatArray());
        Assert.Contains(RandomCheckpoint.Create(bias, 5, DType.F32).ToFloatArray(), v => v != 0);
        Assert.Equal((0.02, 0f), (Math.Round(RandomCheckpoint.Distribution(QwenLike, QwenLike.Entries[4], InitStyle.Default).Std, 6), 0f));
    }

    [Fact]
    public void HuggingFaceInitOnAnotherFamilyDoesNotScaleAndIsRecordedInTheFile()
    {
        var manifest = new WeightManifest("MistralLike",
        [
            new WeightEntry("model.layers.0.self_attn.o_proj.weight", [256, 256], WeightRole.Attention),
            new WeightEntry("model.layers.7.mlp.down_proj.weight", [256, 512], WeightRole.FeedForward),
            new WeightEntry("model.layers.0.self_attn.q_proj.bias", [256], WeightRole.Attention),
        ], []);
        Assert.Equal(0.02, RandomCheckpoint.Distribution(manifest, manifest.Entries[0], InitStyle.HuggingFace).Std, 6);
        Assert.Equal(0.02, RandomCheckpoint.Distribution(manifest, manifest.Entries[1], InitStyle.HuggingFace).Std, 6);
        Assert.Equal((0.0, 0f), RandomCheckpoint.Distribution(manifest, manifest.Entries[2], InitStyle.HuggingFace));
        Directory.CreateDirectory(_folder);
        string file = Path.Combine(_folder, "hf.safetensors");
        RandomCheckpoint.Write(manifest, file, seed: 2, DType.BF16, init: InitStyle.HuggingFace);
        using var folder = CheckpointFolder.Open(file);
        using var bound = WeightBinder.Bind(manifest, folder);
        foreach (var entry in manifest.Entries)
            Assert.Equal(RandomCheckpoint.Create(manifest, entry, 2, DType.BF16, InitStyle.HuggingFace).ToFloatArray(), bound[entry.Key].ToFloatArray());
        using var raw = SafetensorsFile.Open(file);
        Assert.Equal("huggingface", raw.Metadata[RandomCheckpoint.InitMetadataKey]);
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
