using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using Xunit.Abstractions;

namespace MoeCompiler.Checkpoints.Tests;

public class Zip64Tests(ITestOutputHelper output)
{
    [Fact]
    public void Reads_zip64_records_and_padded_entries_in_place()
    {
        using var temp = new TempFolder();
        string path = temp.File("pytorch_model.bin");
        var pickle = TorchZipWriter.Pickle(new[]
        {
            new TorchZipWriter.TensorRef("w", "0", 12, 0, new long[] { 3, 4 }, new long[] { 4, 1 }),
            new TorchZipWriter.TensorRef("wt", "0", 12, 0, new long[] { 4, 3 }, new long[] { 1, 4 }),
            new TorchZipWriter.TensorRef("tail", "0", 12, 10, new long[] { 2 }, new long[] { 1 }),
        });
        TorchZipWriter.Write(path, "archive", pickle, new[] { new TorchZipWriter.Storage("0", 12, TorchZipWriter.Floats(12, i => i)) });
        using var folder = CheckpointFolder.Open(path);
        var w = folder.GetTensor("w");
        Assert.IsType<MappedFileStorage>(w.Storage);
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (float)i), w.ToFloatArray());
        Assert.Equal(new float[] { 0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11 }, folder.GetTensor("wt").ToFloatArray());
        Assert.Equal(new float[] { 10, 11 }, folder.GetTensor("tail").ToFloatArray());
    }

    [Fact]
    public void Tensor_reaching_past_its_storage_is_rejected()
    {
        using var temp = new TempFolder();
        string path = temp.File("pytorch_model.bin");
        var pickle = TorchZipWriter.Pickle(new[] { new TorchZipWriter.TensorRef("w", "0", 12, 5, new long[] { 2, 4 }, new long[] { 4, 1 }) });
        TorchZipWriter.Write(path, "archive", pickle, new[] { new TorchZipWriter.Storage("0", 12, TorchZipWriter.Floats(12, i => i)) });
        var ex = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(path));
        Assert.Contains("reaches outside its 12-element storage", ex.Message);
        Assert.Contains("'w'", ex.Message);
    }

    [Fact]
    public void Expanded_view_larger_than_its_storage_is_refused_not_allocated()
    {
        using var temp = new TempFolder();
        string path = temp.File("pytorch_model.bin");
        var pickle = TorchZipWriter.Pickle(new[] { new TorchZipWriter.TensorRef("w", "0", 4, 0, new long[] { 2_000_000_000, 2_000_000_000 }, new long[] { 0, 0 }) });
        TorchZipWriter.Write(path, "archive", pickle, new[] { new TorchZipWriter.Storage("0", 4, TorchZipWriter.Floats(4, i => i)) });
        var ex = Assert.Throws<CheckpointException>(() => CheckpointFolder.Open(path));
        Assert.Contains("expanded view", ex.Message);
    }

    [SlowFact]
    public void A_storage_over_4_GiB_is_used_in_place()
    {
        using var temp = new TempFolder();
        string path = temp.File("pytorch_model-00001-of-00001.bin");
        const long Rows = 36_000, Columns = 32_768; // 4.39 GiB of f32 in one storage, as in the fp32 Qwen shards
        const long Elements = Rows * Columns;
        var pickle = TorchZipWriter.Pickle(new[]
        {
            new TorchZipWriter.TensorRef("transformer.wte.weight", "0", Elements, 0, new[] { Rows - 1, Columns }, new[] { Columns, 1L }),
            new TorchZipWriter.TensorRef("lm_head.weight", "0", Elements, (Rows - 1) * Columns, new[] { 1L, Columns }, new[] { Columns, 1L }),
        });
        TorchZipWriter.Write(path, "pytorch_model-00001-of-00001", pickle,
            new[] { new TorchZipWriter.Storage("0", Elements, TorchZipWriter.Floats(Elements, i => i % 1000)) });
        output.WriteLine($"file: {new FileInfo(path).Length >> 20} MiB");
        using var folder = CheckpointFolder.Open(path);
        var manifest = new WeightManifest("BigTorch", new[]
        {
            new WeightEntry("transformer.wte.weight", new[] { (int)Rows - 1, (int)Columns }, WeightRole.Embedding),
            new WeightEntry("lm_head.weight", new[] { 1, (int)Columns }, WeightRole.LmHead),
        }, Array.Empty<string>());
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        using var bound = WeightBinder.Bind(manifest, folder);
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        output.WriteLine($"bind allocated {allocated / 1024} KiB managed; mapped {bound.MappedBytes >> 20} MiB; copied {bound.CopiedBytes}");
        Assert.Equal(0, bound.CopiedBytes);
        Assert.True(allocated < 16L << 20);
        var head = bound["lm_head.weight"];
        Assert.IsType<MappedFileStorage>(head.Storage);
        Assert.True(head.ByteOffset > uint.MaxValue); // really beyond the 4 GiB mark
        var values = head.AsFloats();
        for (int i = 0; i < 5; i++) Assert.Equal(((Rows - 1) * Columns + i) % 1000, values[i]);
    }
}
