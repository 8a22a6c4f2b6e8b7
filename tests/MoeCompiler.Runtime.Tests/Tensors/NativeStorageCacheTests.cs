using MoeCompiler.Runtime.Tensors;
using Xunit;

namespace MoeCompiler.Runtime.Tests.Tensors;

/// <summary>The cache of released native blocks (<see cref="NativeStorage.CacheBytes"/>, <see cref="BlockCache"/>): size
/// classes, a reused block handed out zeroed like a fresh one (also after sizes that do not fit pushed others out),
/// eviction of the size class used longest ago, and renting a somewhat larger block.</summary>
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

    private static nint Block(long bytes) => (nint)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)bytes, 64);

    /// <summary>A cache of its own (not the process-wide one, which other tests use at the same time).</summary>
    [Fact]
    public void WhenFullTheSizeClassUsedLongestAgoGoesFirst()
    {
        const long MiB = 1 << 20;
        var cache = new BlockCache(10 * MiB);
        Assert.True(cache.Return((void*)Block(4 * MiB), 4 * MiB));
        Assert.True(cache.Return((void*)Block(3 * MiB), 3 * MiB));
        long asked = 4 * MiB;
        Assert.True(cache.Rent(ref asked) != null); // the 4 MiB class is now the most recently used
        Assert.True(cache.Return((void*)Block(4 * MiB), 4 * MiB));
        Assert.Equal(7 * MiB, cache.CachedBytes);
        // 5 MiB more does not fit in 10: the 3 MiB class (used longest ago) goes, the 4 MiB block stays.
        Assert.True(cache.Return((void*)Block(5 * MiB), 5 * MiB));
        Assert.Equal(0, cache.Count(3 * MiB));
        Assert.Equal(1, cache.Count(4 * MiB));
        Assert.Equal(1, cache.Count(5 * MiB));
        Assert.Equal(9 * MiB, cache.CachedBytes);
        // A block larger than the limit, or smaller than the minimum, is not kept.
        Assert.False(cache.Return((void*)0x1000, 11 * MiB));
        Assert.False(cache.Return((void*)0x1000, BlockCache.MinBytes - 1));
        // Lowering the limit frees blocks, least recently used first.
        cache.Limit = 5 * MiB;
        Assert.Equal(0, cache.Count(4 * MiB));
        Assert.Equal(1, cache.Count(5 * MiB));
        cache.Trim();
        Assert.Equal(0, cache.CachedBytes);
    }

    [Fact]
    public void ARentTakesTheSmallestLargerBlockUpToHalfAgainAsLarge()
    {
        const long MiB = 1 << 20;
        var cache = new BlockCache(64 * MiB);
        Assert.True(cache.Return((void*)Block(12 * MiB), 12 * MiB));
        Assert.True(cache.Return((void*)Block(7 * MiB), 7 * MiB));
        long asked = 5 * MiB;
        void* block = cache.Rent(ref asked);
        Assert.True(block != null);
        Assert.Equal(7 * MiB, asked); // 7 ≤ 1.5 × 5; 12 would be too large
        asked = 5 * MiB;
        Assert.True(cache.Rent(ref asked) == null); // only 12 MiB is left: more than 1.5 × 5
        Assert.Equal(5 * MiB, asked);
        asked = 8 * MiB;
        void* second = cache.Rent(ref asked);
        Assert.True(second != null);
        Assert.Equal(12 * MiB, asked);
        Assert.Equal(0, cache.CachedBytes);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(block);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(second);
    }
}
