using MoeCompiler.Runtime.Tensors;
using Xunit;

namespace MoeCompiler.Runtime.Tests.Tensors;

/// <summary>The cache of released native blocks (<see cref="NativeStorage.CacheBytes"/>): size classes, and a reused
/// block handed out zeroed like a fresh one, also after the cache has been flushed by sizes that do not fit.</summary>
public sealed unsafe class NativeStorageCacheTests
{
    [Theory]
    [InlineData(256 * 1024)]
    [InlineData(256 * 1024 + 1)]
    [InlineData(600 * 5504 * 4)]
    [InlineData(494 * 5504 * 4)]
    [InlineData(3_000_001)]
    [InlineData((1L << 31) + 12345)]
    public void SizeClassIsAtMostOneEighthLargerAndOfTheFormMTimesAPowerOfTwo(long bytes)
    {
        long c = NativeStorage.SizeClass(bytes);
        Assert.InRange(c, bytes, bytes + bytes / 8 + 1);
        long m = c;
        while (m >= 16 && m % 2 == 0) m /= 2;
        Assert.InRange(m, 1, 15);
        Assert.Equal(c, NativeStorage.SizeClass(c));
    }

    [Fact]
    public void ReleasedBlocksComeBackZeroed()
    {
        var random = new Random(5);
        // Sizes around one class, then many distinct classes (more than the cache holds: it flushes and starts over).
        var sizes = Enumerable.Range(0, 8).Select(i => 3_000_000L + 4096 * i)
            .Concat(Enumerable.Range(0, 40).Select(i => (long)(1 << 20) * (i % 20 + 4) + 64 * i)).ToArray();
        foreach (long size in sizes.Concat(sizes))
        {
            var storage = new NativeStorage(size);
            var bytes = new Span<byte>((void*)storage.Pointer, (int)size);
            Assert.True(bytes.IndexOfAnyExcept((byte)0) < 0, $"a new block of {size} bytes is not zero");
            bytes.Fill((byte)random.Next(1, 256));
            storage.Dispose();
        }
        var t = Tensor.Allocate(DType.F32, 600, 5504);
        Assert.True(t.AsFloats().IndexOfAnyExcept(0f) < 0);
        t.Storage.Dispose();
    }
}
