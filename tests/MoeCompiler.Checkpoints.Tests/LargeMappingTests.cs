using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Checkpoints.Tests;

/// <summary>A checkpoint larger than the machine's memory must still map (the 16B+ variants are 32–95 GB in bf16).</summary>
public class LargeMappingTests
{
    [Fact]
    public void Maps_a_file_twice_the_size_of_memory_read_only()
    {
        // Sparse: the file takes no disk space. A private writable (copy-on-write) mapping of this size is refused
        // by Linux's heuristic overcommit with ENOMEM; a shared read-only mapping is not charged to the commit limit.
        long memory = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        long size = Math.Max(2 * memory, 8L << 30) + 4096;
        string path = Path.Combine(Path.GetTempPath(), $"moe-large-map-{Guid.NewGuid():N}.bin");
        try
        {
            using (var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
            {
                stream.SetLength(size);
                stream.Seek(size - 1, SeekOrigin.Begin);
                stream.WriteByte(42);
            }
            using var storage = MappedFileStorage.Open(path);
            Assert.Equal(size, storage.ByteLength);
            Assert.True(storage.IsReadOnly);
            Assert.Equal(0, storage.Bytes(0, 1)[0]);
            Assert.Equal(42, storage.Bytes(size - 1, 1)[0]);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
