using System.Text;
using System.Text.Json;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace MoeCompiler.Checkpoints.Tests;

/// <summary>Quantised safetensors (docs/quantization.md): written, mapped in place, bound, and written by the quantiser.</summary>
public class QuantizedCheckpointTests
{
    private static Tensor Random(int rows, int columns, int seed)
    {
        var random = new Random(seed);
        var values = new float[rows * columns];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * 0.1f;
        return Tensor.FromFloats(values, rows, columns);
    }

    private static unsafe byte[] RawBytes(Tensor t)
    {
        var bytes = new ReadOnlySpan<byte>((void*)t.Data, checked((int)t.ByteLength)).ToArray();
        GC.KeepAlive(t);
        return bytes;
    }

    private static JsonElement Header(string path)
    {
        var bytes = File.ReadAllBytes(path);
        int length = (int)BitConverter.ToUInt64(bytes, 0);
        return JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, length)).RootElement.Clone();
    }

    [Fact]
    public void Int8_and_q4_write_map_in_place_and_read_back_exactly()
    {
        using var temp = new TempFolder();
        string path = temp.File("q.safetensors");
        var i8 = WeightQuantizer.Quantize(Random(3, 64, 1), QuantizationType.Int8);
        var q4 = WeightQuantizer.Quantize(Random(5, 96, 2), QuantizationType.Q4);
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["a.weight"] = i8, ["b.weight"] = q4 });

        // On disk: q4 is U8 [rows, columns / 2], both have BF16 companions, the metadata names the layout version.
        var header = Header(path);
        Assert.Equal("1", header.GetProperty("__metadata__").GetProperty(SafetensorsFile.QuantizationFormatKey).GetString());
        Assert.Equal("U8", header.GetProperty("b.weight").GetProperty("dtype").GetString());
        Assert.Equal("[5,48]", header.GetProperty("b.weight").GetProperty("shape").GetRawText());
        Assert.Equal("BF16", header.GetProperty("b.weight.scales").GetProperty("dtype").GetString());
        Assert.Equal("[5,3]", header.GetProperty("b.weight.scales").GetProperty("shape").GetRawText());
        Assert.Equal("I8", header.GetProperty("a.weight").GetProperty("dtype").GetString());

        using var folder = CheckpointFolder.Open(path);
        Assert.Equal(new[] { "a.weight", "b.weight" }, folder.Keys.Order(StringComparer.Ordinal));
        Assert.True(folder.TryGetInfo("b.weight", out var info));
        Assert.Equal(DType.Q4, info.DType);
        Assert.Equal(new[] { 5, 96 }, info.Shape);
        foreach (var (key, written) in new[] { ("a.weight", i8), ("b.weight", q4) })
        {
            Assert.True(folder.TryGetTensor(key, out var read));
            Assert.Equal(written.DType, read.DType);
            Assert.Equal(written.Shape.ToArray(), read.Shape.ToArray());
            Assert.Equal(32, read.GroupSize);
            Assert.IsType<MappedFileStorage>(read.Storage); // mapped in place, no copy
            Assert.Equal(RawBytes(written), RawBytes(read));
            Assert.Equal(RawBytes(written.Scales!), RawBytes(read.Scales!));
            Assert.Equal(written.ToFloatArray(), read.ToFloatArray());
        }
    }

    [Fact]
    public void U8_without_the_layout_metadata_stays_unsupported_and_other_versions_are_refused()
    {
        using var temp = new TempFolder();
        string plain = temp.File("plain.safetensors");
        File.WriteAllBytes(plain, SafetensorsTests.FileWithHeader(
            "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,16],\"data_offsets\":[0,16]},\"w.scales\":{\"dtype\":\"BF16\",\"shape\":[1,1],\"data_offsets\":[16,18]}}", 18));
        using (var file = SafetensorsFile.Open(plain))
        {
            Assert.True(file.TryGetInfo("w", out var info));
            Assert.Null(info.DType);
        }
        string future = temp.File("future.safetensors");
        File.WriteAllBytes(future, SafetensorsTests.FileWithHeader(
            "{\"__metadata__\":{\"moe.quantization.format\":\"2\"},\"w\":{\"dtype\":\"U8\",\"shape\":[1,16],\"data_offsets\":[0,16]}}", 16));
        var ex = Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(future).Dispose());
        Assert.Contains("future.safetensors", ex.Message);
        Assert.Contains("'2'", ex.Message);

        string badScales = temp.File("bad.safetensors");
        File.WriteAllBytes(badScales, SafetensorsTests.FileWithHeader(
            "{\"__metadata__\":{\"moe.quantization.format\":\"1\"},\"w\":{\"dtype\":\"U8\",\"shape\":[1,32],\"data_offsets\":[0,32]},\"w.scales\":{\"dtype\":\"BF16\",\"shape\":[1,1],\"data_offsets\":[32,34]}}", 34));
        using var bad = SafetensorsFile.Open(badScales);
        var scalesError = Assert.Throws<CheckpointException>(() => bad.GetTensor("w"));
        Assert.Contains("one scale per 32 columns", scalesError.Message);
    }

    private static WeightManifest Manifest() => new("Q", new[]
    {
        new WeightEntry("embed.weight", new[] { 40, 64 }, WeightRole.Embedding),
        new WeightEntry("layer.norm.weight", new[] { 64 }, WeightRole.Norm),
        new WeightEntry("layer.q_proj.weight", new[] { 64, 64 }, WeightRole.Attention),
        new WeightEntry("layer.q_proj.bias", new[] { 64 }, WeightRole.Attention),
        new WeightEntry("layer.router.weight", new[] { 4, 64 }, WeightRole.Router),
        new WeightEntry("layer.experts.0.w1.weight", new[] { 96, 64 }, WeightRole.Expert),
        new WeightEntry("layer.odd.weight", new[] { 8, 40 }, WeightRole.FeedForward),
        new WeightEntry("vision.position_embedding.weight", new[] { 10, 32 }, WeightRole.Vision),
        new WeightEntry("vision.fc1.weight", new[] { 64, 32 }, WeightRole.Vision),
        new WeightEntry("projector.0.weight", new[] { 64, 32 }, WeightRole.Projector),
        new WeightEntry("lm_head.weight", new[] { 40, 64 }, WeightRole.LmHead),
    }, Array.Empty<string>());

    private static string WriteSource(TempFolder temp, DType dtype = DType.BF16)
    {
        string folder = Path.Combine(temp.Path, "source");
        Directory.CreateDirectory(folder);
        int seed = 0;
        var tensors = Manifest().Entries.ToDictionary(e => e.Key, e =>
            DTypeConversion.Convert(e.Shape.Length == 1 ? Tensor.FromFloats(new float[e.Shape[0]], e.Shape) : Random(e.Shape[0], e.Shape[1], ++seed), dtype));
        SafetensorsWriter.Write(Path.Combine(folder, "model.safetensors"), tensors);
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), "{}");
        return folder;
    }

    [Theory]
    [InlineData(QuantizationType.Int8)]
    [InlineData(QuantizationType.Q4)]
    public void Binding_quantises_linear_weights_and_keeps_routers_norms_biases_and_position_embeddings(QuantizationType type)
    {
        using var temp = new TempFolder();
        using var folder = CheckpointFolder.Open(WriteSource(temp));
        var q = WeightQuantizer.DTypeOf(type);
        using (var bound = WeightBinder.Bind(Manifest(), folder, new BindOptions { TargetDType = q }))
        {
            Assert.Equal(q, bound["layer.q_proj.weight"].DType);
            Assert.Equal(q, bound["layer.experts.0.w1.weight"].DType);
            // The default tower policy: kept as stored for int8, int8 for q4 (docs/quantization.md, "Which tensors").
            var towerDType = type == QuantizationType.Int8 ? DType.BF16 : DType.I8;
            Assert.Equal(towerDType, bound["vision.fc1.weight"].DType);
            Assert.Equal(towerDType, bound["projector.0.weight"].DType);
            Assert.Equal(DType.I8, bound["embed.weight"].DType);   // the default for embedding and lm_head
            Assert.Equal(DType.I8, bound["lm_head.weight"].DType);
            Assert.Equal(DType.BF16, bound["layer.router.weight"].DType);
            Assert.Equal(DType.BF16, bound["layer.norm.weight"].DType);
            Assert.Equal(DType.BF16, bound["layer.q_proj.bias"].DType);
            Assert.Equal(DType.BF16, bound["layer.odd.weight"].DType); // 40 columns do not form groups of 32
            Assert.Equal(DType.BF16, bound["vision.position_embedding.weight"].DType);
            var expected = WeightQuantizer.Quantize(folder.GetTensor("layer.q_proj.weight"), type);
            Assert.Equal(RawBytes(expected), RawBytes(bound["layer.q_proj.weight"]));
        }
        var keep = new BindOptions { Quantization = new QuantizationOptions(type) { EmbeddingType = null, TowerType = type } };
        using (var bound = WeightBinder.Bind(Manifest(), folder, keep))
        {
            Assert.Equal(DType.BF16, bound["embed.weight"].DType);
            Assert.Equal(DType.BF16, bound["lm_head.weight"].DType);
            Assert.Equal(q, bound["layer.q_proj.weight"].DType);
            Assert.Equal(q, bound["vision.fc1.weight"].DType); // the tower at the chosen type, as asked
            Assert.Equal(q, bound["projector.0.weight"].DType);
            Assert.Equal(DType.BF16, bound["vision.position_embedding.weight"].DType);
        }
    }

    [Fact]
    public void Quantiser_writes_a_folder_that_binds_to_the_same_tensors_as_quantising_at_load()
    {
        using var temp = new TempFolder();
        string source = WriteSource(temp);
        string output = Path.Combine(temp.Path, "q4");
        var options = new QuantizationOptions(QuantizationType.Q4);
        var reports = new List<BindProgress>();
        using (var folder = CheckpointFolder.Open(source))
        {
            // A tiny shard limit: several shards, an index, and every quantised tensor next to its scales.
            var result = CheckpointQuantizer.Write(Manifest(), folder, output, options, maxShardBytes: 3000,
                progress: new Progress(reports));
            Assert.True(result.Files.Count(f => f.EndsWith(".safetensors", StringComparison.Ordinal)) > 2);
            Assert.Contains("tokenizer_config.json", result.CopiedFiles);
            Assert.Equal(6, result.QuantizedTensors); // q_proj, expert, vision fc1 and projector (int8), embedding, lm_head
            Assert.True(result.WrittenBytes < result.SourceBytes / 2);
        }
        Assert.Equal(Manifest().Entries.Count, reports.Count);
        Assert.Equal(reports.Count, reports[^1].TensorsDone);
        Assert.True(File.Exists(Path.Combine(output, CheckpointFolder.SafetensorsIndexName)));
        Assert.True(File.Exists(Path.Combine(output, "tokenizer_config.json")));

        using var written = CheckpointFolder.Open(output);
        using var source2 = CheckpointFolder.Open(source);
        using var fromFile = WeightBinder.Bind(Manifest(), written);
        using var atLoad = WeightBinder.Bind(Manifest(), source2, new BindOptions { Quantization = options });
        foreach (var entry in Manifest().Entries)
        {
            Assert.Equal(atLoad[entry.Key].DType, fromFile[entry.Key].DType);
            Assert.Equal(RawBytes(atLoad[entry.Key]), RawBytes(fromFile[entry.Key]));
            if (atLoad[entry.Key].Scales is { } scales) Assert.Equal(RawBytes(scales), RawBytes(fromFile[entry.Key].Scales!));
        }
        // Binding the quantised folder again with the same type keeps it; another type is refused (no double rounding).
        using (WeightBinder.Bind(Manifest(), written, new BindOptions { TargetDType = DType.Q4 })) { }
        var ex = Assert.Throws<CheckpointBindingException>(() => WeightBinder.Bind(Manifest(), written, new BindOptions { TargetDType = DType.I8 }));
        Assert.Contains("layer.q_proj.weight", ex.Message);

        // Never writes into a folder that holds anything.
        using var again = CheckpointFolder.Open(source);
        var refused = Assert.Throws<CheckpointException>(() => CheckpointQuantizer.Write(Manifest(), again, output, options));
        Assert.Contains("not empty", refused.Message);
    }

    [Fact]
    public void A_non_finite_weight_is_a_checkpoint_error_naming_the_tensor()
    {
        using var temp = new TempFolder();
        string path = temp.File("nan.safetensors");
        var values = new float[64 * 64];
        values[100] = float.PositiveInfinity;
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["layer.q_proj.weight"] = Tensor.FromFloats(values, 64, 64) });
        using var folder = CheckpointFolder.Open(path);
        var manifest = new WeightManifest("Q", new[] { new WeightEntry("layer.q_proj.weight", new[] { 64, 64 }, WeightRole.Attention) }, Array.Empty<string>());
        var ex = Assert.Throws<CheckpointException>(() => WeightBinder.Bind(manifest, folder, new BindOptions { TargetDType = DType.Q4 }));
        Assert.Contains("layer.q_proj.weight", ex.Message);
        Assert.Contains("nan.safetensors", ex.Message);
        Assert.Contains("row 1, column 36", ex.Message);
    }

    private sealed class Progress(List<BindProgress> reports) : IProgress<BindProgress>
    {
        public void Report(BindProgress value) => reports.Add(value);
    }
}
