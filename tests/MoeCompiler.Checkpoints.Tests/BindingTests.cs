using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace MoeCompiler.Checkpoints.Tests;

public class BindingTests
{
    [Theory]
    [InlineData("torch_stablelm")]
    [InlineData("torch_qwen_sharded")]
    public void Binds_in_place_without_copies(string fixture)
    {
        using var folder = CheckpointFolder.Open(Fixtures.Path_(fixture));
        var manifest = Fixtures.ManifestOf(fixture);
        using var bound = WeightBinder.Bind(manifest, folder);
        Assert.Equal(manifest.Entries.Count, bound.Count);
        Assert.Equal(0, bound.CopiedBytes);
        Assert.Equal(manifest.TotalParameters * 4, bound.MappedBytes);
        foreach (var (key, e) in Fixtures.Expected(fixture)) Fixtures.AssertMatches(e, bound[key]);
        Assert.Throws<KeyNotFoundException>(() => bound["nope"]);
    }

    [Fact]
    public void Phi_lm_head_bias_is_listed_as_ignored()
    {
        using var folder = CheckpointFolder.Open(Fixtures.Path_("safetensors_phi_sharded"));
        var manifest = Fixtures.ManifestOf("safetensors_phi_sharded", "lm_head.bias", "*.rotary_emb.inv_freq");
        using var bound = WeightBinder.Bind(manifest, folder);
        Assert.Equal(new[] { "lm_head.bias" }, bound.IgnoredKeys);
        Assert.False(bound.Contains("lm_head.bias"));
        Assert.True(bound.Contains("model.layers.1.mlp.fc2.bias"));
    }

    [Fact]
    public void Every_problem_is_reported_together_with_key_names()
    {
        using var folder = CheckpointFolder.Open(Fixtures.Path_("safetensors_layouts"));
        var entries = new List<WeightEntry>
        {
            new("f32", new[] { 3, 4 }, WeightRole.Attention),            // fine
            new("f16", new[] { 3, 2 }, WeightRole.Attention),            // wrong shape (file has [2, 3])
            new("position_ids", new[] { 1, 5 }, WeightRole.Embedding),   // I64: wrong dtype
            new("model.norm.weight", new[] { 8 }, WeightRole.Norm),      // missing
            new("lm_head.weight", new[] { 16, 8 }, WeightRole.LmHead),   // missing
        };
        var manifest = new WeightManifest("TinyTest", entries, new[] { "scalar" });
        var ex = Assert.Throws<CheckpointBindingException>(() => WeightBinder.Bind(manifest, folder));
        var byKind = ex.Problems.ToLookup(p => p.Kind);
        Assert.Equal(new[] { "lm_head.weight", "model.norm.weight" }, byKind[BindingProblemKind.Missing].Select(p => p.Key).Order());
        Assert.Equal("f16", Assert.Single(byKind[BindingProblemKind.WrongShape]).Key);
        Assert.Equal("position_ids", Assert.Single(byKind[BindingProblemKind.WrongDType]).Key);
        // unexpected: everything else in the file except the ignored 'scalar'
        Assert.Equal(new[] { "bf16", "column", "empty", "offset_slice", "shared_head", "transposed" },
            byKind[BindingProblemKind.Unexpected].Select(p => p.Key).Order(StringComparer.Ordinal));
        Assert.Contains("TinyTest", ex.Message);
        Assert.Contains("2 missing, 6 unexpected, 1 wrong shape, 1 wrong dtype", ex.Message);
        Assert.Contains("expected [3, 2], checkpoint has [2, 3]", ex.Message);
        Assert.Contains("I64", ex.Message);
    }

    [Fact]
    public void Conversion_at_load_matches_torch_rounding_and_reports_progress()
    {
        using var folder = CheckpointFolder.Open(Fixtures.Path_("safetensors_conversions"));
        var source = folder.GetTensor("f32");
        var manifest = new WeightManifest("Conv", new[] { new WeightEntry("f32", source.Shape.ToArray(), WeightRole.Norm) }, new[] { "bf16", "f16" });
        foreach (var (target, reference) in new[] { (DType.BF16, "bf16"), (DType.F16, "f16") })
        {
            var reports = new List<BindProgress>();
            using var bound = WeightBinder.Bind(manifest, folder, new BindOptions { TargetDType = target, Progress = new SyncProgress(reports) });
            var converted = bound["f32"];
            Assert.Equal(target, converted.DType);
            // bit-exact against torch's .to(): round to nearest even, overflow to inf, subnormals kept
            Assert.Equal(folder.GetTensor(reference).AsSpan<ushort>().ToArray(), converted.AsSpan<ushort>().ToArray());
            var last = Assert.Single(reports);
            Assert.True(last.Converted);
            Assert.Equal(last.BytesTotal, last.BytesDone);
            Assert.Equal(1, last.TensorsTotal);
            Assert.Equal(converted.ByteLength, bound.CopiedBytes);
        }
        // and back up to f32: exact
        var up = DTypeConversion.Convert(folder.GetTensor("bf16"), DType.F32);
        Assert.Equal(folder.GetTensor("bf16").ToFloatArray(), up.ToFloatArray());
    }

    [Fact]
    public void Bf16_rounding_edge_cases()
    {
        Assert.Equal(0x3F80, DTypeConversion.SingleToBFloat16(1.0f));
        Assert.Equal(0x3F80, DTypeConversion.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F808000))); // tie → even (down)
        Assert.Equal(0x3F82, DTypeConversion.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F818000))); // tie → even (up)
        Assert.Equal(0x3F81, DTypeConversion.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F808001)));
        Assert.True(float.IsNaN(DTypeConversion.BFloat16ToSingle(DTypeConversion.SingleToBFloat16(float.NaN))));
        Assert.Equal(0xFF80, DTypeConversion.SingleToBFloat16(float.NegativeInfinity));
    }

    [Fact]
    public void Bound_weights_outlive_the_folder()
    {
        BoundWeights bound;
        using (var folder = CheckpointFolder.Open(Fixtures.Path_("torch_stablelm")))
            bound = WeightBinder.Bind(Fixtures.ManifestOf("torch_stablelm"), folder);
        using (bound)
        {
            var storage = Assert.IsType<MappedFileStorage>(bound["lm_head.weight"].Storage);
            Assert.False(storage.IsDisposed);
            Fixtures.AssertMatches(Fixtures.Expected("torch_stablelm")["lm_head.weight"], bound["lm_head.weight"]);
            bound.Dispose();
            Assert.True(storage.IsDisposed);
        }
    }

    [Fact]
    public void Int8_target_quantises_only_weights_whose_columns_form_groups()
    {
        using var temp = new TempFolder();
        string path = temp.File("m.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor>
        {
            ["w"] = Tensor.FromFloats(new float[] { 1, 2 }, 1, 2),
            ["v.weight"] = Tensor.FromFloats(new float[64], 2, 32),
        });
        using var folder = CheckpointFolder.Open(path);
        var manifest = new WeightManifest("Q", new[]
        {
            new WeightEntry("w", new[] { 1, 2 }, WeightRole.Attention),
            new WeightEntry("v.weight", new[] { 2, 32 }, WeightRole.Attention),
        }, Array.Empty<string>());
        using var bound = WeightBinder.Bind(manifest, folder, new BindOptions { TargetDType = DType.I8 });
        Assert.Equal(DType.F32, bound["w"].DType);
        Assert.Equal(DType.I8, bound["v.weight"].DType);
    }

    [Fact]
    public void From_tensors_wraps_in_memory_weights()
    {
        var t = Tensor.FromFloats(new float[] { 1, 2 }, 2);
        using var bound = BoundWeights.FromTensors(new Dictionary<string, Tensor> { ["a"] = t });
        Assert.Same(t, bound["a"]);
        Assert.True(bound.Contains("a"));
        Assert.Empty(bound.IgnoredKeys);
    }

    [Fact]
    public void Folder_errors_name_the_problem()
    {
        using var temp = new TempFolder();
        Assert.Contains("no checkpoint here", Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(temp.Path)).Message);
        Assert.Contains("no such file", Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(temp.File("missing"))).Message);

        SafetensorsWriter.Write(temp.File("a.safetensors"), new Dictionary<string, Tensor> { ["x"] = Tensor.FromFloats(new[] { 1f }, 1) });
        File.WriteAllText(temp.File(CheckpointFolder.SafetensorsIndexName), "{\"weight_map\": {\"x\": \"../a.safetensors\"}}");
        Assert.Contains("not a plain file name", Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(temp.Path)).Message);
        File.WriteAllText(temp.File(CheckpointFolder.SafetensorsIndexName), "{\"weight_map\": {\"y\": \"a.safetensors\"}}");
        Assert.Contains("has no such tensor", Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(temp.Path)).Message);
        File.WriteAllText(temp.File(CheckpointFolder.SafetensorsIndexName), "{\"weight_map\": {\"x\": \"b.safetensors\"}}");
        Assert.Contains("not in the folder", Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(temp.Path)).Message);
        File.WriteAllText(temp.File(CheckpointFolder.SafetensorsIndexName), "{\"weight_map\": {\"x\": \"a.safetensors\",}}");
        Assert.Contains("not valid JSON", Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(temp.Path)).Message);
        File.Delete(temp.File(CheckpointFolder.SafetensorsIndexName));
        SafetensorsWriter.Write(temp.File("b.safetensors"), new Dictionary<string, Tensor> { ["x"] = Tensor.FromFloats(new[] { 2f }, 1) });
        Assert.Contains("in both", Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(temp.Path)).Message);
    }

    /// <summary>Progress&lt;T&gt; posts asynchronously; tests need the reports in order, now.</summary>
    private sealed class SyncProgress(List<BindProgress> reports) : IProgress<BindProgress>
    {
        public void Report(BindProgress value) => reports.Add(value);
    }
}
