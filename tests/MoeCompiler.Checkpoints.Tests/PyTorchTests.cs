using System.Text;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Checkpoints.Tests;

public class PyTorchTests
{
    [Theory]
    [InlineData("torch_stablelm")]
    [InlineData("torch_stablelm_dense")]
    [InlineData("torch_qwen_sharded")]
    public void Reads_torch_save_checkpoints_in_place(string fixture)
    {
        using var folder = CheckpointFolder.Open(Fixtures.Path_(fixture));
        var expected = Fixtures.Expected(fixture);
        Assert.Equal(CheckpointFormat.PyTorch, folder.Format);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), folder.Keys);
        foreach (var (key, e) in expected)
        {
            Assert.True(folder.TryGetTensor(key, out var tensor));
            Fixtures.AssertMatches(e, tensor);
            Assert.IsType<MappedFileStorage>(tensor.Storage); // stored, 64-byte aligned entries: zero copy
        }
    }

    [Fact]
    public void Sharded_qwen_uses_both_shards_through_the_index()
    {
        using var folder = CheckpointFolder.Open(Fixtures.Path_("torch_qwen_sharded", "pytorch_model.bin.index.json"));
        Assert.Equal(2, folder.Files.Count);
        Assert.True(folder.TryGetInfo("transformer.h.0.attn.c_attn.weight", out var first));
        Assert.True(folder.TryGetInfo("lm_head.weight", out var last));
        Assert.NotEqual(first.FilePath, last.FilePath);
        Assert.Equal(new[] { 24, 8 }, first.Shape);
    }

    [Fact]
    public void Honours_strides_offsets_shared_storages_and_dtypes()
    {
        using var folder = CheckpointFolder.Open(Fixtures.Path_("torch_layouts"));
        var expected = Fixtures.Expected("torch_layouts");
        foreach (var (key, e) in expected)
        {
            if (e.DType == "I64")
            {
                var ex = Assert.Throws<CheckpointException>(() => folder.TryGetTensor(key, out _));
                Assert.Contains("I64", ex.Message);
                continue;
            }
            Assert.True(folder.TryGetTensor(key, out var tensor));
            Fixtures.AssertMatches(e, tensor);
        }
        // a transposed view and a strided column are gathered into new memory; a slice with an offset is a view
        Assert.IsNotType<MappedFileStorage>(folder.GetTensor("transposed").Storage);
        Assert.IsNotType<MappedFileStorage>(folder.GetTensor("column").Storage);
        Assert.IsType<MappedFileStorage>(folder.GetTensor("offset_slice").Storage);
        Assert.IsType<MappedFileStorage>(folder.GetTensor("f16").Storage);
        Assert.IsType<MappedFileStorage>(folder.GetTensor("bf16").Storage);
    }

    [Theory]
    [InlineData("os_system.bin", "system")]
    [InlineData("builtins_eval.bin", "__builtin__.eval")] // protocol 2 spells builtins the Python 2 way
    public void Forbidden_globals_are_refused_by_name(string file, string global)
    {
        string marker = "/tmp/moecompiler-pwned";
        var ex = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(Fixtures.Path_("evil", file)));
        Assert.Contains("forbidden global", ex.Message);
        Assert.Contains(global, ex.Message);
        Assert.Contains(file, ex.Message);
        Assert.False(File.Exists(marker) && File.GetLastWriteTimeUtc(marker) > DateTime.UtcNow.AddMinutes(-5));
    }

    [Fact]
    public void Legacy_and_non_dict_files_are_refused()
    {
        var legacy = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(Fixtures.Path_("evil", "legacy_format.bin")));
        Assert.Contains("legacy", legacy.Message);
        var list = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(Fixtures.Path_("evil", "list_not_dict.bin")));
        Assert.Contains("not a state dict", list.Message);
    }

    private static string Rezip(TempFolder temp, string name, Func<List<(string Name, byte[] Data)>, List<(string Name, byte[] Data)>> change, bool deflate = false)
    {
        var entries = ZipBuilder.Read(Fixtures.Path_("torch_layouts", "pytorch_model.bin"));
        string path = temp.File(name);
        File.WriteAllBytes(path, ZipBuilder.Build(change(entries), deflate));
        return path;
    }

    [Fact]
    public void Any_top_level_folder_name_and_deflated_entries_are_read()
    {
        using var temp = new TempFolder();
        string renamed = Rezip(temp, "renamed.bin", es => es.Select(e => ("archive" + e.Name[e.Name.IndexOf('/')..], e.Data)).ToList());
        string deflated = Rezip(temp, "deflated.bin", es => es, deflate: true);
        foreach (var path in new[] { renamed, deflated })
        {
            using var folder = CheckpointFolder.Open(path);
            Fixtures.AssertMatches(Fixtures.Expected("torch_layouts")["f32"], folder.GetTensor("f32"));
            Fixtures.AssertMatches(Fixtures.Expected("torch_layouts")["transposed"], folder.GetTensor("transposed"));
        }
    }

    [Fact]
    public void Wrong_zip_entries_give_clear_errors()
    {
        using var temp = new TempFolder();
        (string Path, string Expected)[] cases =
        {
            (Rezip(temp, "no_pickle.bin", es => es.Where(e => !e.Name.EndsWith("data.pkl")).ToList()), "no '<folder>/data.pkl'"),
            (Rezip(temp, "no_storage.bin", es => es.Where(e => !e.Name.EndsWith("/data/0")).ToList()), "has no entry"),
            (Rezip(temp, "short_storage.bin", es => es.Select(e => e.Name.EndsWith("/data/0") ? (e.Name, e.Data[..^4]) : e).ToList()), "bytes but holds"),
            (Rezip(temp, "stray.bin", es => es.Append(("other/evil.py", Encoding.UTF8.GetBytes("print()"))).ToList()), "outside the archive folder"),
            (Rezip(temp, "two_pickles.bin", es => es.Append(("second/data.pkl", es[0].Data)).ToList()), "2 data.pkl"),
            (Rezip(temp, "bad_version.bin", es => es.Select(e => e.Name.EndsWith("/version") ? (e.Name, Encoding.ASCII.GetBytes("99\n")) : e).ToList()), "serialization version"),
            (Rezip(temp, "big_endian.bin", es => es.Append(("pytorch_model/byteorder", Encoding.ASCII.GetBytes("big"))).ToList()), "big-endian"),
        };
        foreach (var (path, expected) in cases)
        {
            var ex = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(path));
            Assert.Contains(expected, ex.Message);
            Assert.Contains(Path.GetFileName(path), ex.Message);
        }
    }

    [Fact]
    public void Truncated_torch_file_is_rejected_at_every_cut()
    {
        using var temp = new TempFolder();
        var bytes = File.ReadAllBytes(Fixtures.Path_("torch_layouts", "pytorch_model.bin"));
        string cut = temp.File("cut.bin");
        for (int length = 0; length < bytes.Length; length += 7)
        {
            File.WriteAllBytes(cut, bytes.AsSpan(0, length).ToArray());
            Assert.Throws<CheckpointException>(() => PyTorchCheckpointFile.Open(cut).Dispose());
        }
    }

    // ---- the unpickler on hand-made pickles ----

    private static object? Unpickle(params byte[] pickle) => new RestrictedUnpickler("test.pkl", pickle).Load();

    private static byte[] Pickle(string text) => Encoding.Latin1.GetBytes(text);

    [Theory]
    [InlineData("cos\nsystem\n", "os.system")]
    [InlineData("cbuiltins\neval\n", "builtins.eval")]
    [InlineData("cbuiltins\ngetattr\n", "builtins.getattr")]
    [InlineData("ctorch\nload\n", "torch.load")]
    [InlineData("ctorch.storage\n_load_from_bytes\n", "torch.storage._load_from_bytes")]
    [InlineData("ctorch._utils\n_rebuild_qtensor\n", "torch._utils._rebuild_qtensor")]
    [InlineData("c__builtin__\nopen\n", "__builtin__.open")]
    public void Unpickler_rejects_globals_outside_the_allow_list(string global, string name)
    {
        var ex = Assert.Throws<CheckpointException>(() => Unpickle(Pickle("\x80\x02" + global + ")R.")));
        Assert.Contains($"forbidden global '{name}'", ex.Message);
    }

    [Fact]
    public void Unpickler_rejects_stack_global_and_object_construction()
    {
        // STACK_GLOBAL with 'posix', 'system'
        var stack = Pickle("\x80\x04\x8c\x05posix\x8c\x06system\x93.");
        Assert.Contains("posix.system", Assert.Throws<CheckpointException>(() => Unpickle(stack)).Message);
        foreach (var op in new[] { "\x81", "\x92", "o", "i" })
            Assert.Contains("constructs an arbitrary object", Assert.Throws<CheckpointException>(() => Unpickle(Pickle("\x80\x02)" + op + "."))).Message);
        Assert.Contains("extension registry", Assert.Throws<CheckpointException>(() => Unpickle(Pickle("\x80\x02\x82\x01."))).Message);
    }

    [Fact]
    public void Unpickler_reads_ordered_dicts_ints_and_strings()
    {
        // OrderedDict() with two items, plus BUILD of a _metadata state as torch writes it
        var bytes = Pickle("\u0080\u0002ccollections\nOrderedDict\nq\u0000)Rq\u0001(X\u0001\u0000\u0000\u0000aK\u0005X\u0001\u0000\u0000\u0000b\u008a\u0002\u0000\u0080u}q\u0002X\u0009\u0000\u0000\u0000_metadatah\u0000)Rsb.");
        var dict = Assert.IsType<PyDict>(Unpickle(bytes));
        Assert.Equal(2, dict.Items.Count);
        Assert.Equal("a", dict.Items[0].Key);
        Assert.Equal(5L, dict.Items[0].Value);
        Assert.Equal(-32768L, dict.Items[1].Value);
    }

    [Theory]
    [InlineData("\x80\x02", "truncated")]          // no STOP
    [InlineData("\x80\x02X\xff\xff\xff\x7f.", "runs past the end")]
    [InlineData("\x80\x02h\x07.", "never stored")]
    [InlineData("\x80\x02t.", "no MARK")]
    [InlineData("\x80\x02R.", "underflow")]
    [InlineData("\x80\x09.", "protocol 9")]
    [InlineData("\x80\x02\xff.", "unsupported pickle opcode 0xff")]
    [InlineData("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00.", "too large")]
    [InlineData("\x80\x02K\x01K\x02.", "malformed stack")]
    public void Unpickler_reports_malformed_pickles(string pickle, string expected)
    {
        var ex = Assert.Throws<CheckpointException>(() => Unpickle(Pickle(pickle)));
        Assert.Contains(expected, ex.Message);
    }
}
