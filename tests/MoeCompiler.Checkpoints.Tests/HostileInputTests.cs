using System.Text;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Tooling;

namespace MoeCompiler.Checkpoints.Tests;

/// <summary>
/// Regression tests for issue 17 (hostile input), one per case, each building its hostile file here. Memory cases
/// assert the structural bound (what was inflated or refused before allocation) and, as a coarse second check,
/// that resident anonymous memory did not grow by anything near what the file asked for.
/// </summary>
[Collection(MemoryMeasuringCollection.Name)]
public class HostileInputTests
{
    private static readonly byte[] OnePointFiveMinusTwo = BitConverter.GetBytes(1.5f).Concat(BitConverter.GetBytes(-2f)).ToArray();

    private static TorchZipWriter.TensorRef View(string key, string storage, long storageElements, long offset, long elements) =>
        new(key, storage, storageElements, offset, new[] { elements }, new[] { 1L });

    [Fact]
    public void Deflated_storages_are_inflated_only_as_far_as_their_views_reach()
    {
        // 4 storages of 512 MiB each (the file had 1.9 GB each), every tensor a 2-element view at offset 0
        using var temp = new TempFolder();
        string path = temp.File("pytorch_model.bin");
        const long StorageBytes = 512L << 20;
        var deflated = HostileZip.DeflatedPrefixThenZeros(OnePointFiveMinusTwo, StorageBytes);
        HostileZip.WriteTorchBin(path, Enumerable.Range(0, 4)
            .Select(i => (View($"w{i}", $"{i}", StorageBytes / 4, 0, 2), deflated)).ToList());

        long before = ResidentMemory.AnonymousMiB();
        using var file = PyTorchCheckpointFile.Open(path);
        for (int i = 0; i < 4; i++)
        {
            var t = file.GetTensor($"w{i}");
            Assert.Equal(new[] { 1.5f, -2f }, t.ToFloatArray());
            Assert.Equal(8, t.Storage.ByteLength); // the view's 8 bytes, not the storage's 512 MiB
        }
        long grown = ResidentMemory.AnonymousMiB() - before;
        Assert.True(grown < 256, $"reading 4 two-element views grew resident memory by {grown} MiB");
    }

    [Fact]
    public void A_small_view_at_the_end_of_a_huge_deflated_storage_is_refused_before_allocating()
    {
        using var temp = new TempFolder();
        string path = temp.File("pytorch_model.bin");
        const long StorageBytes = 256L << 20;
        var deflated = HostileZip.DeflatedPrefixThenZeros([], StorageBytes);
        HostileZip.WriteTorchBin(path, [(View("model.norm.weight", "0", StorageBytes / 4, StorageBytes / 4 - 2, 2), deflated)]);

        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var e = Assert.Throws<CheckpointException>(() => PyTorchCheckpointFile.Open(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("would have to be inflated to 268435456 bytes for tensors that hold only 8 bytes", e.Message);
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore < 16 << 20);
    }

    [Fact]
    public void A_storage_that_inflates_past_two_gigabytes_does_not_overflow()
    {
        using var temp = new TempFolder();
        string path = temp.File("pytorch_model.bin");
        const long StorageBytes = (1L << 31) + (64L << 20); // past int.MaxValue bytes (the OverflowException)
        var deflated = HostileZip.DeflatedPrefixThenZeros(OnePointFiveMinusTwo, StorageBytes);
        HostileZip.WriteTorchBin(path, [(View("w", "0", StorageBytes / 4, 0, 2), deflated)]);

        using var file = PyTorchCheckpointFile.Open(path);
        Assert.Equal(new[] { 1.5f, -2f }, file.GetTensor("w").ToFloatArray());
    }

    [Fact]
    public void A_300_megabyte_deflated_pickle_is_refused_by_its_declared_size()
    {
        using var temp = new TempFolder();
        string path = temp.File("pytorch_model.bin");
        const long PickleBytes = 300L << 20;
        var pickle = HostileZip.DeflatedRepeat("\u0080\u0002"u8, (byte)'}', PickleBytes);
        HostileZip.Write(path, [new HostileZip.Entry("archive/data.pkl", pickle, PickleBytes, true)]);

        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var e = Assert.Throws<CheckpointException>(() => PyTorchCheckpointFile.Open(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("larger than any state dict pickle", e.Message);
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore < 16 << 20);
    }

    [Theory]
    [InlineData((byte)'}', "values")] // EMPTY_DICT: a new dict per byte
    [InlineData((byte)'2', "stack")]  // DUP: a new stack slot per byte
    [InlineData((byte)'(', "values")] // MARK: a new mark per byte
    public void Pickle_growth_is_capped(byte opcode, string limit)
    {
        // a pickle within the size limit whose every opcode creates something
        var pickle = new byte[48 << 20];
        Array.Fill(pickle, opcode);
        pickle[0] = 0x80; pickle[1] = 2; pickle[2] = (byte)'}';

        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var e = Assert.Throws<CheckpointException>(() => new RestrictedUnpickler("hostile.pkl", pickle).Load());
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        Assert.Contains("hostile.pkl", e.Message);
        Assert.Contains(limit, e.Message);
        Assert.True(allocated < 400L << 20, $"unpickling allocated {allocated >> 20} MiB before refusing");
    }

    [Fact]
    public void Memo_growth_is_capped()
    {
        // NONE then (MEMOIZE) over and over: a new memo slot per byte
        var pickle = new byte[8 << 20];
        Array.Fill(pickle, (byte)0x94);
        pickle[0] = 0x80; pickle[1] = 4; pickle[2] = (byte)'N';
        var e = Assert.Throws<CheckpointException>(() => new RestrictedUnpickler("memo.pkl", pickle).Load());
        Assert.Contains("memo.pkl", e.Message);
        Assert.Contains("memo grows past", e.Message);
    }

    [Theory]
    [InlineData("100000001")]
    [InlineData("2147483647")]
    public void Absurd_layer_counts_in_a_config_are_refused_at_once(string layers)
    {
        string config = $$"""
            {"model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": {{layers}}, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 1000, "intermediate_size": 128}
            """;
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var e = Assert.Throws<CheckpointException>(() => ConfigImporter.ImportSpec(config, sourcePath: "hostile/config.json"));
        Assert.Contains("hostile/config.json", e.Message);
        Assert.Contains($"'num_hidden_layers' is {layers}, more than the 512", e.Message);
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore < 16 << 20);
    }

    [Theory]
    [InlineData("num_local_experts", "mixtral")]
    [InlineData("hidden_size", "mixtral")]
    [InlineData("vocab_size", "mixtral")]
    public void Other_absurd_counts_in_a_config_are_refused(string key, string modelType)
    {
        var values = new Dictionary<string, long>
        {
            ["hidden_size"] = 64, ["num_hidden_layers"] = 2, ["num_attention_heads"] = 4, ["num_key_value_heads"] = 2,
            ["vocab_size"] = 1000, ["intermediate_size"] = 128, ["num_local_experts"] = 8,
        };
        values[key] = int.MaxValue;
        string config = "{\"model_type\": \"" + modelType + "\", " + string.Join(", ", values.Select(kv => $"\"{kv.Key}\": {kv.Value}")) + "}";
        var e = Assert.Throws<CheckpointException>(() => ConfigImporter.ImportSpec(config, sourcePath: "c.json"));
        Assert.Contains($"'{key}' is {int.MaxValue}", e.Message);
    }

    [Fact]
    public void A_device_given_as_config_json_is_refused_without_reading_it()
    {
        var e = Assert.Throws<CheckpointException>(() => ConfigImporter.ImportSpecFromFolder("/dev/zero"));
        Assert.Contains("/dev/zero", e.Message);
        Assert.Contains("not a regular file", e.Message);
    }

    [Fact]
    public async Task A_fifo_given_as_config_json_is_refused_without_opening_it()
    {
        using var temp = new TempFolder();
        string fifo = Fifo.Make(temp.File("config.json"));
        // a blocked open would never return: the guard turns that into a failure instead of a hung test run
        var load = Task.Run(() => Assert.Throws<CheckpointException>(() => ConfigImporter.ImportSpecFromFolder(temp.Path)));
        var e = await load.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Contains(fifo, e.Message);
        Assert.Contains("not a regular file", e.Message);
    }

    [Fact]
    public void A_link_to_a_device_given_as_config_json_is_refused()
    {
        using var temp = new TempFolder();
        string link = temp.File("config.json");
        File.CreateSymbolicLink(link, "/dev/zero");
        var e = Assert.Throws<CheckpointException>(() => ConfigImporter.ImportSpecFromFolder(temp.Path));
        Assert.Contains(link, e.Message);
    }
}

/// <summary>Tests that read resident memory run one at a time, so that one's allocations do not show in another's.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MemoryMeasuringCollection
{
    public const string Name = "memory measuring";
}

internal static class Fifo
{
    public static string Make(string path)
    {
        using var process = System.Diagnostics.Process.Start("mkfifo", [path]);
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException("mkfifo failed");
        return path;
    }
}
