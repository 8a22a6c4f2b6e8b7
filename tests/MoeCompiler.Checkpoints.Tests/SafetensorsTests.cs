using System.Buffers.Binary;
using System.Text;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace MoeCompiler.Checkpoints.Tests;

public class SafetensorsTests
{
    [Fact]
    public void Reads_numpy_written_sharded_phi_checkpoint_with_index()
    {
        using var folder = CheckpointFolder.Open(Fixtures.Path_("safetensors_phi_sharded"));
        var expected = Fixtures.Expected("safetensors_phi_sharded");
        Assert.Equal(CheckpointFormat.Safetensors, folder.Format);
        Assert.Equal(2, folder.Files.Count);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), folder.Keys);
        Assert.Contains("model.layers.0.mlp.deepspeed_moe.experts.deepspeed_experts.3.fc2.bias", folder.Keys);
        foreach (var (key, e) in expected)
        {
            Assert.True(folder.TryGetTensor(key, out var tensor));
            Fixtures.AssertMatches(e, tensor);
            Assert.IsType<MappedFileStorage>(tensor.Storage); // zero copy
        }
        Assert.False(folder.TryGetTensor("model.layers.9.mlp.fc1.weight", out _));
    }

    [Fact]
    public void Reads_layouts_and_names_unsupported_dtype()
    {
        using var folder = CheckpointFolder.Open(Fixtures.Path_("safetensors_layouts", "model.safetensors"));
        foreach (var (key, e) in Fixtures.Expected("safetensors_layouts"))
        {
            if (e.DType == "I64")
            {
                Assert.True(folder.TryGetInfo(key, out var info));
                Assert.Null(info.DType);
                var ex = Assert.Throws<CheckpointException>(() => folder.TryGetTensor(key, out _));
                Assert.Contains("I64", ex.Message);
                Assert.Contains(key, ex.Message);
                Assert.Contains("model.safetensors", ex.Message);
                continue;
            }
            Assert.True(folder.TryGetTensor(key, out var tensor));
            Fixtures.AssertMatches(e, tensor);
        }
    }

    [Fact]
    public void Writer_round_trips_every_dtype_and_metadata()
    {
        using var temp = new TempFolder();
        var f32 = Tensor.FromFloats(new float[] { 1, -2, 3.5f, 0.25f, 7, 8 }, 2, 3);
        var bf16 = DTypeConversion.Convert(f32, DType.BF16);
        var f16 = DTypeConversion.Convert(f32, DType.F16);
        var scales = Tensor.FromFloats(new[] { 0.5f, 0.25f }, 2);
        var i8 = new Tensor(new NativeStorage(6), 0, DType.I8, new[] { 2, 3 }, "q", scales);
        var raw = i8.AsSpan<sbyte>();
        for (int i = 0; i < 6; i++) raw[i] = (sbyte)(i * 20 - 50);
        var scalar = Tensor.FromFloats(new[] { 42f });
        var empty = Tensor.Allocate(DType.F32, 0, 5);
        string path = temp.File("out.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor>
        {
            ["a.f32"] = f32, ["a.bf16"] = bf16, ["a.f16"] = f16, ["a.i8"] = i8, ["scalar"] = scalar.Reshape(), ["empty"] = empty,
        }, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ü" });

        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(File.ReadAllBytes(path).AsSpan(0, 8));
        Assert.Equal(0, (8 + headerLength) % 8);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("ü", file.Metadata["note"]);
        Assert.Equal(new[] { "a.bf16", "a.f16", "a.f32", "a.i8", "empty", "scalar" }, file.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(f32.ToFloatArray(), file.GetTensor("a.f32").ToFloatArray());
        Assert.Equal(bf16.ToFloatArray(), file.GetTensor("a.bf16").ToFloatArray());
        Assert.Equal(f16.ToFloatArray(), file.GetTensor("a.f16").ToFloatArray());
        var readI8 = file.GetTensor("a.i8");
        Assert.Equal(DType.I8, readI8.DType);
        Assert.Equal(i8.ToFloatArray(), readI8.ToFloatArray());
        Assert.Equal(0, file.GetTensor("scalar").Rank);
        Assert.Equal(new[] { 0, 5 }, file.GetTensor("empty").Shape.ToArray());
    }

    [Fact]
    public void Writer_output_is_byte_identical_to_the_numpy_written_shards()
    {
        using var temp = new TempFolder();
        foreach (var shard in new[] { "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors" })
        {
            string original = Fixtures.Path_("safetensors_phi_sharded", shard);
            using var file = SafetensorsFile.Open(original);
            string copy = temp.File(shard);
            // same keys in header order, same metadata: an independent writer must produce the same bytes
            SafetensorsWriter.Write(copy, file.Keys.Select(k => KeyValuePair.Create(k, file.GetTensor(k))).ToList(), file.Metadata.ToDictionary());
            Assert.Equal(File.ReadAllBytes(original), File.ReadAllBytes(copy));
        }
    }

    [Fact]
    public void Sharded_writer_splits_by_size_and_writes_an_index()
    {
        using var temp = new TempFolder();
        var tensors = Enumerable.Range(0, 7).Select(i => KeyValuePair.Create($"model.layers.{i}.w",
            Tensor.FromFloats(Enumerable.Range(0, 10 * (i + 1)).Select(v => v * 0.5f + i).ToArray(), i + 1, 10))).ToList();
        var scales = Tensor.FromFloats(new[] { 0.5f, 0.25f }, 2);
        var q = new Tensor(new NativeStorage(8), 0, DType.I8, new[] { 2, 4 }, "q", scales);
        tensors.Add(KeyValuePair.Create("q", q));
        string folder = temp.File("out");
        var files = SafetensorsWriter.WriteSharded(folder, tensors, maxShardBytes: 400);
        Assert.Equal(CheckpointFolder.SafetensorsIndexName, Path.GetFileName(files[^1]));
        int shards = files.Count - 1;
        Assert.True(shards >= 4, $"{shards} shards");
        Assert.Equal($"model-00001-of-{shards:D5}.safetensors", Path.GetFileName(files[0]));
        using (var read = CheckpointFolder.Open(folder))
        {
            Assert.Equal(tensors.Select(t => t.Key).Order(StringComparer.Ordinal), read.Keys);
            foreach (var (key, t) in tensors) Assert.Equal(t.ToFloatArray(), read.GetTensor(key).ToFloatArray());
        }
        var again = Assert.Throws<CheckpointException>(() => SafetensorsWriter.WriteSharded(folder, tensors, 400));
        Assert.Contains("refusing to overwrite", again.Message);
        SafetensorsWriter.WriteSharded(folder, tensors, 400, overwrite: true);

        string single = temp.File("single");
        Assert.Equal(new[] { Path.Combine(single, "model.safetensors") }, SafetensorsWriter.WriteSharded(single, tensors, 1L << 30));
    }

    [Fact]
    public void Writer_never_overwrites_unless_asked()
    {
        using var temp = new TempFolder();
        string path = temp.File("user.safetensors");
        File.WriteAllText(path, "precious");
        var t = new Dictionary<string, Tensor> { ["x"] = Tensor.FromFloats(new[] { 1f }, 1) };
        var ex = Assert.Throws<CheckpointException>(() => SafetensorsWriter.Write(path, t));
        Assert.Contains("refusing to overwrite", ex.Message);
        Assert.Equal("precious", File.ReadAllText(path));
        SafetensorsWriter.Write(path, t, overwrite: true);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(new[] { 1f }, file.GetTensor("x").ToFloatArray());
        Assert.Single(Directory.GetFiles(temp.Path)); // no temporary left behind
    }

    [Fact]
    public void Overwriting_a_file_that_is_mapped_keeps_old_tensors_valid()
    {
        using var temp = new TempFolder();
        string path = temp.File("m.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["x"] = Tensor.FromFloats(new[] { 1f, 2f }, 2) });
        using var old = SafetensorsFile.Open(path);
        var before = old.GetTensor("x");
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["x"] = Tensor.FromFloats(new[] { 3f, 4f }, 2) }, overwrite: true);
        Assert.Equal(new[] { 1f, 2f }, before.ToFloatArray());
        using var fresh = SafetensorsFile.Open(path);
        Assert.Equal(new[] { 3f, 4f }, fresh.GetTensor("x").ToFloatArray());
    }

    // ---- malformed files ----

    internal static byte[] FileWithHeader(string json, int dataBytes, ulong? declaredLength = null)
    {
        var header = Encoding.UTF8.GetBytes(json);
        var bytes = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        return bytes;
    }

    public static TheoryData<string, string, int, string> MalformedHeaders => new()
    {
        { "bad json", "{\"a\": {\"dtype\": \"F32\", ", 0, "not valid JSON" },
        { "trailing comma", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "not valid JSON" },
        { "comment", "{/* hi */}", 0, "not valid JSON" },
        { "not an object", "[1, 2]      ", 0, "start with '{'" },
        { "duplicate key", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "twice" },
        { "duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "appears twice" },
        { "lying offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "outside" },
        { "size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16, "needs 12 bytes" },
        { "overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap" },
        { "backwards offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "backwards" },
        { "overflowing shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483647,2147483647,2147483647],\"data_offsets\":[0,4]}}", 4, "overflows" },
        { "huge dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296],\"data_offsets\":[0,4]}}", 4, "not an integer" },
        { "negative dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "not an integer" },
        { "fractional dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "not an integer" },
        { "unknown dtype", "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "unknown dtype 'Q4_K'" },
        { "missing field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "needs 'dtype', 'shape' and 'data_offsets'" },
        { "unknown field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4, "unknown field 'extra'" },
        { "three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "exactly two" },
        { "metadata not strings", "{\"__metadata__\":{\"a\":1}}", 0, "not a string" },
        { "entry not object", "{\"a\":3}", 0, "not an object" },
        { "lone surrogate key", "{\"\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid" },
        { "lone surrogate metadata", "{\"__metadata__\":{\"a\":\"\\udc00\"}}", 0, "invalid" },
    };

    [Theory]
    [MemberData(nameof(MalformedHeaders))]
    public void Malformed_header_gives_a_clear_error(string name, string json, int dataBytes, string expected)
    {
        using var temp = new TempFolder();
        string path = temp.File(name.Replace(' ', '_') + ".safetensors");
        File.WriteAllBytes(path, FileWithHeader(json, dataBytes));
        var ex = Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains(expected, ex.Message);
        Assert.Equal(path, ex.FilePath);
        Assert.StartsWith(path, ex.Message);
    }

    [Fact]
    public void Header_length_bounds_are_checked()
    {
        using var temp = new TempFolder();
        string path = temp.File("x.safetensors");
        File.WriteAllBytes(path, new byte[] { 1, 2, 3 });
        Assert.Contains("too short", Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path)).Message);
        File.WriteAllBytes(path, Array.Empty<byte>());
        Assert.Contains("empty", Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path)).Message);
        File.WriteAllBytes(path, FileWithHeader("{}", 0, declaredLength: 1000));
        Assert.Contains("runs past the end", Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path)).Message);
        File.WriteAllBytes(path, FileWithHeader("{}", 0, declaredLength: ulong.MaxValue));
        Assert.Contains("exceeds", Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path)).Message);
        File.WriteAllBytes(path, FileWithHeader("{}", 0, declaredLength: 0));
        Assert.Contains("too small", Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path)).Message);
    }

    [Fact]
    public void Truncated_file_is_rejected_at_every_cut()
    {
        using var temp = new TempFolder();
        string full = temp.File("full.safetensors");
        SafetensorsWriter.Write(full, new Dictionary<string, Tensor>
        {
            ["a"] = Tensor.FromFloats(new float[] { 1, 2, 3, 4 }, 2, 2),
            ["b"] = Tensor.FromFloats(new float[] { 5, 6 }, 2),
        });
        var bytes = File.ReadAllBytes(full);
        string cut = temp.File("cut.safetensors");
        for (int length = 0; length < bytes.Length; length++)
        {
            File.WriteAllBytes(cut, bytes.AsSpan(0, length).ToArray());
            Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(cut).Dispose());
        }
    }

    [Fact]
    public void Int8_without_scales_is_a_clear_error()
    {
        using var temp = new TempFolder();
        string path = temp.File("q.safetensors");
        File.WriteAllBytes(path, FileWithHeader("{\"w\":{\"dtype\":\"I8\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", 4));
        using var file = SafetensorsFile.Open(path);
        Assert.Contains("has no scales", Assert.Throws<CheckpointException>(() => file.GetTensor("w")).Message);
    }

    [Fact]
    public void Misaligned_tensor_is_copied_once_not_read_unaligned()
    {
        using var temp = new TempFolder();
        string path = temp.File("odd.safetensors");
        // One I8-sized pad byte then an f32 tensor at data offset 1 (gaps are allowed; alignment is not promised).
        var bytes = FileWithHeader("{\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}", 9);
        int dataStart = bytes.Length - 9;
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(dataStart + 1), 1.5f);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(dataStart + 5), -2f);
        File.WriteAllBytes(path, bytes);
        using var file = SafetensorsFile.Open(path);
        var t = file.GetTensor("f");
        Assert.Equal(new[] { 1.5f, -2f }, t.ToFloatArray());
        Assert.Equal(0, t.Data % 4);
    }
}
