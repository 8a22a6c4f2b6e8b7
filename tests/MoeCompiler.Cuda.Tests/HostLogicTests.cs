using MoeCompiler.Cuda.Native;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda.Tests;

/// <summary>Fake device memory: hands out increasing fake addresses up to a byte budget and records frees.</summary>
internal sealed class FakeDeviceMemory(long budget = long.MaxValue) : IDeviceMemory
{
    private nint _next = 0x10000;
    public long Used { get; private set; }
    public int Allocations { get; private set; }
    public Dictionary<nint, long> Live { get; } = new();
    public List<nint> Freed { get; } = new();

    public nint TryAllocate(long bytes)
    {
        if (Used + bytes > budget) return 0;
        nint p = _next;
        _next += (nint)bytes;
        Used += bytes;
        Allocations++;
        Live.Add(p, bytes);
        return p;
    }

    public void Free(nint pointer)
    {
        Used -= Live[pointer];
        Live.Remove(pointer);
        Freed.Add(pointer);
    }
}

public sealed class CachingAllocatorTests
{
    [Theory]
    [InlineData(0, 512)]
    [InlineData(1, 512)]
    [InlineData(512, 512)]
    [InlineData(513, 1024)]
    [InlineData((1 << 20) - 1, 1 << 20)]
    [InlineData(1 << 20, 2 << 20)]
    [InlineData((2 << 20) + 1, 4 << 20)]
    public void SizesRoundUpToTheirBucket(long bytes, long expected) => Assert.Equal(expected, CachingAllocator.RoundSize(bytes));

    [Fact]
    public void AReleasedBlockIsReusedForTheSameBucketWithoutADeviceCall()
    {
        var memory = new FakeDeviceMemory();
        using var allocator = new CachingAllocator(memory);
        nint a = allocator.Allocate(1000, out long size);
        Assert.Equal(1024, size);
        allocator.Release(a);
        Assert.Equal(1024, allocator.CachedBytes);
        nint b = allocator.Allocate(900, out _);
        Assert.Equal(a, b);
        Assert.Equal(1, memory.Allocations);
        Assert.Equal(1, allocator.CacheHits);
        nint c = allocator.Allocate(3000, out _); // another bucket: a new block
        Assert.NotEqual(a, c);
        Assert.Equal(2, memory.Allocations);
        Assert.Equal(1024 + 3072, allocator.InUseBytes);
        Assert.Equal(0, allocator.CachedBytes);
    }

    [Fact]
    public void BlocksInUseAreNeverHandedOutTwice()
    {
        using var allocator = new CachingAllocator(new FakeDeviceMemory());
        var seen = new HashSet<nint>();
        for (int i = 0; i < 50; i++) Assert.True(seen.Add(allocator.Allocate(700, out _)));
    }

    [Fact]
    public void OutOfMemoryReclaimsThenFreesTheCacheThenRetries()
    {
        var memory = new FakeDeviceMemory(budget: 4 << 20);
        using var allocator = new CachingAllocator(memory);
        nint big = allocator.Allocate(3 << 20, out _);    // 4 MiB bucket: the whole budget
        allocator.Release(big);                              // cached, still held from the device
        int reclaims = 0;
        nint other = allocator.Allocate(2 << 20, out _, () => reclaims++); // a different bucket
        Assert.Equal(1, reclaims);
        Assert.Contains(big, memory.Freed);
        Assert.Equal(2 << 20, allocator.ReservedBytes);
        Assert.NotEqual(0, other);
    }

    [Fact]
    public void ReclaimCanSatisfyTheRequestFromTheCache()
    {
        var memory = new FakeDeviceMemory(budget: 1024);
        using var allocator = new CachingAllocator(memory);
        nint a = allocator.Allocate(1024, out _);
        nint b = allocator.Allocate(1024, out _, () => allocator.Release(a)); // as a finalizer would
        Assert.Equal(a, b);
        Assert.Equal(1, memory.Allocations);
    }

    [Fact]
    public void ExhaustedMemoryThrowsWithTheAmounts()
    {
        using var allocator = new CachingAllocator(new FakeDeviceMemory(budget: 1024));
        allocator.Allocate(1024, out _);
        var e = Assert.Throws<OutOfMemoryException>(() => allocator.Allocate(1024, out _));
        Assert.Contains("1024 bytes", e.Message);
    }

    [Fact]
    public void DoubleReleaseIsCaught()
    {
        using var allocator = new CachingAllocator(new FakeDeviceMemory());
        nint a = allocator.Allocate(10, out _);
        allocator.Release(a);
        Assert.Throws<InvalidOperationException>(() => allocator.Release(a));
    }

    [Fact]
    public void DisposeFreesEveryBlockIncludingLiveOnes()
    {
        var memory = new FakeDeviceMemory();
        var allocator = new CachingAllocator(memory);
        allocator.Allocate(10, out _);
        allocator.Release(allocator.Allocate(5000, out _));
        allocator.Dispose();
        Assert.Empty(memory.Live);
        Assert.Equal(0, memory.Used);
    }

    [Fact]
    public void ReleasesFromOtherThreadsAreSafe()
    {
        var memory = new FakeDeviceMemory();
        using var allocator = new CachingAllocator(memory);
        var blocks = Enumerable.Range(0, 200).Select(i => allocator.Allocate(600, out _)).ToArray();
        Parallel.ForEach(blocks, b => allocator.Release(b));
        Assert.Equal(0, allocator.InUseBytes);
        Assert.Equal(200 * 1024, allocator.CachedBytes);
        var again = Enumerable.Range(0, 200).Select(i => allocator.Allocate(600, out _)).ToHashSet();
        Assert.Equal(blocks.ToHashSet(), again);
        Assert.Equal(200, memory.Allocations);
    }
}

public sealed class KernelCacheTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "moe-kernel-cache-test-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }

    private static KernelCacheKey Key(string source = "src", string arch = "sm_90", string[]? options = null, string version = "12.4", bool cubin = true) =>
        new("norms.cu", source, arch, options ?? ["--gpu-architecture=sm_90"], version, cubin);

    [Fact]
    public void TheHashDependsOnEverythingThatChangesTheImage()
    {
        string baseline = Key().Hash;
        Assert.Equal(baseline, Key().Hash);
        Assert.Equal(64, baseline.Length);
        Assert.NotEqual(baseline, Key(source: "src ").Hash);
        Assert.NotEqual(baseline, Key(arch: "sm_80").Hash);
        Assert.NotEqual(baseline, Key(options: ["--gpu-architecture=sm_90", "-lineinfo"]).Hash);
        Assert.NotEqual(baseline, Key(version: "12.5").Hash);
        Assert.NotEqual(baseline, Key(cubin: false).Hash);
        Assert.NotEqual(Key(options: ["a b"]).Hash, Key(options: ["a", "b"]).Hash);
        Assert.NotEqual(Key(source: "x", arch: "ysm_90").Hash, Key(source: "xy", arch: "sm_90").Hash);
    }

    [Fact]
    public void CompilesOncePerProcessAndOncePerDiskCache()
    {
        int compiles = 0;
        byte[] Compile() { compiles++; return [1, 2, 3]; }
        var first = new KernelCache(_directory);
        Assert.Equal([1, 2, 3], first.GetOrCompile(Key(), Compile));
        Assert.Equal([1, 2, 3], first.GetOrCompile(Key(), Compile));
        Assert.Equal(1, compiles);
        Assert.Single(Directory.GetFiles(_directory));
        Assert.EndsWith(".cubin", Directory.GetFiles(_directory)[0]);

        var second = new KernelCache(_directory); // a new process, same disk cache
        Assert.Equal([1, 2, 3], second.GetOrCompile(Key(), Compile));
        Assert.Equal(1, compiles);
        Assert.Equal(0, second.Compilations);

        second.GetOrCompile(Key(arch: "sm_80"), Compile);
        Assert.Equal(2, compiles);
    }

    [Fact]
    public void WithoutADiskCacheOnlyTheProcessCacheIsUsed()
    {
        int compiles = 0;
        var cache = new KernelCache(null);
        cache.GetOrCompile(Key(), () => { compiles++; return [7]; });
        new KernelCache(null).GetOrCompile(Key(), () => { compiles++; return [7]; });
        Assert.Equal(2, compiles);
    }
}

public sealed class LibraryLocatorTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "moe-locator-test-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private string MakeDir(string relative, params string[] files)
    {
        string dir = Path.Combine(_root, relative);
        Directory.CreateDirectory(dir);
        foreach (string f in files) File.WriteAllBytes(Path.Combine(dir, f), []);
        return dir;
    }

    [Fact]
    public void NewerNamesComeFirstThenExplicitDirectoriesThenTheLoaderThenDiscoveredDirectories()
    {
        string mine = MakeDir("mine", "libnvrtc.so.11.2");
        string wheel = MakeDir("site/nvidia/cuda_nvrtc/lib", "libnvrtc.so.12", "libnvrtc.so.12.4.127", "libnvrtc-builtins.so.12");
        var candidates = CudaLibraryLocator.Candidates(["libnvrtc.so.12", "libnvrtc.so.11.2"], [mine], [wheel]);
        Assert.Equal(
        [
            "libnvrtc.so.12",
            Path.Combine(wheel, "libnvrtc.so.12"),
            Path.Combine(wheel, "libnvrtc.so.12.4.127"),
            Path.Combine(mine, "libnvrtc.so.11.2"),
            "libnvrtc.so.11.2",
        ], candidates);
    }

    [Fact]
    public void MissingDirectoriesAreIgnoredAndDuplicatesDropped()
    {
        string dir = MakeDir("a", "libcublas.so.12");
        var candidates = CudaLibraryLocator.Candidates(["libcublas.so.12"], [dir, dir, Path.Combine(_root, "absent")], [dir]);
        Assert.Equal([Path.Combine(dir, "libcublas.so.12"), "libcublas.so.12"], candidates);
    }

    [Fact]
    public void TheDirectoryVariableIsColonSeparated()
    {
        Assert.Equal(["/a/lib", "/b", "/c d"], CudaLibraryLocator.ExplicitDirectories("/a/lib::/b: /c d :"));
        Assert.Empty(CudaLibraryLocator.ExplicitDirectories(" "));
    }

    [Fact]
    public void PipWheelLibraryFoldersAreFoundUnderSitePackages()
    {
        string site = MakeDir("py/site-packages");
        string cublas = MakeDir("py/site-packages/nvidia/cublas/lib", "libcublas.so.12");
        string nvrtc = MakeDir("py/site-packages/nvidia/cuda_nvrtc/lib");
        MakeDir("py/site-packages/nvidia/nolib");
        Assert.Equal([cublas, nvrtc], CudaLibraryLocator.NvidiaWheelLibraryDirectories(site).ToArray());
        Assert.Empty(CudaLibraryLocator.NvidiaWheelLibraryDirectories(Path.Combine(_root, "nowhere")));
    }

    [Theory]
    [InlineData("libcublas.so.12", 12)]
    [InlineData("/opt/x/libnvrtc.so.11.2", 11)]
    [InlineData("libnvrtc.so.13.0.48", 13)]
    [InlineData("libcuda.so", null)]
    public void SonameMajorVersionsAreRead(string path, int? expected) => Assert.Equal(expected, CudaLibraryLocator.SonameMajorVersion(path));

    [Fact]
    public void LibrariesNewerThanTheDriverArePassedOverAndSaidSo()
    {
        var e = Assert.Throws<CudaUnavailableException>(() =>
            CudaLibraryLocator.Load("cuBLAS", ["libmoe-missing.so.13", "libmoe-missing.so.12"], maxMajorVersion: 12));
        Assert.Equal(
            ["libmoe-missing.so.13 (skipped: CUDA 13 is newer than the driver's CUDA 12)", "libmoe-missing.so.12"], e.Tried);
    }

    [Fact]
    public void EveryLibraryFamilyTriesItsNewestVersionFirst()
    {
        Assert.Equal("libcublas.so.13", CudaLibraryNames.Cublas[0]);
        Assert.Equal(["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"], CudaLibraryNames.Nvrtc.Take(3));
        Assert.Equal("libcuda.so.1", CudaLibraryNames.Driver[0]);
    }
}

public sealed class ArchitectureSelectionTests
{
    [Fact]
    public void ExactSupportGivesCubinOrPtx()
    {
        Assert.Equal(("sm_90", true), ArchitectureSelection.Choose(90, [75, 80, 86, 89, 90], canEmitCubin: true));
        Assert.Equal(("compute_90", false), ArchitectureSelection.Choose(90, [80, 90], canEmitCubin: false));
    }

    [Fact]
    public void AnOlderCompilerTargetsItsNewestArchitectureAsPtx()
    {
        // Debian's NVRTC 11.x on an H100 (sm_90) if it did not list 90: PTX for compute_87, JIT-compiled forward.
        Assert.Equal(("compute_87", false), ArchitectureSelection.Choose(90, [35, 52, 80, 86, 87], canEmitCubin: true));
    }

    [Fact]
    public void UnknownSupportFallsBackToTheDeviceArchitectureAsPtx() =>
        Assert.Equal(("compute_86", false), ArchitectureSelection.Choose(86, [], canEmitCubin: true));

    [Fact]
    public void ADeviceOlderThanEverySupportedArchitectureIsRefused() =>
        Assert.Throws<CudaUnavailableException>(() => ArchitectureSelection.Choose(50, [75, 80], canEmitCubin: true));
}

public sealed class ConversionAndCatalogTests
{
    [Theory]
    [InlineData(0x3F800000u, (ushort)0x3F80)] // 1.0
    [InlineData(0x3F808000u, (ushort)0x3F80)] // tie, even stays
    [InlineData(0x3F818000u, (ushort)0x3F82)] // tie, odd rounds up
    [InlineData(0x3F808001u, (ushort)0x3F81)] // above the tie
    [InlineData(0x7F7FFFFFu, (ushort)0x7F80)] // max float rounds to infinity, as torch does
    [InlineData(0xFF800000u, (ushort)0xFF80)] // -inf
    public void Bf16RoundsToNearestEven(uint floatBits, ushort expected) =>
        Assert.Equal(expected, HostConversions.FloatToBf16(BitConverter.UInt32BitsToSingle(floatBits)));

    [Fact]
    public void Bf16KeepsNaN() => Assert.True(float.IsNaN(HostConversions.Bf16ToFloat(HostConversions.FloatToBf16(float.NaN))));

    [Fact]
    public void TensorsConvertElementByElement()
    {
        var values = new float[] { 1.5f, -2.25f, 3.14159f, 65504f, 1e-3f, 0f };
        var tensor = Tensor.FromFloats(values, 2, 3);
        var bf16 = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(HostConversions.ConvertTo(tensor, DType.BF16)).ToArray();
        Assert.Equal(values.Select(HostConversions.FloatToBf16), bf16);
        var f16 = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(HostConversions.ConvertTo(tensor, DType.F16)).ToArray();
        Assert.Equal(values.Select(v => (Half)v), f16);
        Assert.Equal(values, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(HostConversions.ConvertTo(tensor, DType.F32)).ToArray());
    }

    [Fact]
    public void EveryCatalogedKernelIsDefinedInItsSourceAndEverySourceHasKernels()
    {
        Assert.Equal(KernelSources.Names.OrderBy(n => n, StringComparer.Ordinal), CudaKernels.SourcesWithEntries.OrderBy(n => n, StringComparer.Ordinal));
        foreach (string source in KernelSources.Names)
        {
            string text = KernelSources.Load(source);
            Assert.StartsWith("#line 1 \"common.cuh\"", text);
            foreach (string kernel in CudaKernels.KernelNamesIn(source))
                Assert.True(text.Contains(kernel + "(", StringComparison.Ordinal) || text.Contains("(" + kernel + ",", StringComparison.Ordinal),
                    $"{source} does not define {kernel}");
        }
        Assert.Equal("attention.cu", CudaKernels.SourceOf("attention_split_f32"));
        Assert.Throws<ArgumentException>(() => CudaKernels.SourceOf("no_such_kernel"));
    }

    [Fact]
    public void KernelArgumentsAreLaidOutAsTheDriverReadsThem()
    {
        Assert.Equal(0xFFFFFFFFL, ((KernelArg)(-1)).Bits);
        Assert.Equal((long)BitConverter.SingleToUInt32Bits(1.5f), ((KernelArg)1.5f).Bits);
        Assert.Equal(1L << 40, ((KernelArg)(1L << 40)).Bits);
        Assert.Equal(0x1234L, KernelArg.Pointer(0x1234).Bits);
    }
}

/// <summary>The tile sizes of the tiled prefill attention kernel against the shared-memory layout of attention.cu.</summary>
public sealed class TiledAttentionShapeTests
{
    /// <summary>Q, K (rows padded by one), V, scores, output and three per-row values, in floats, as the kernel lays them out.</summary>
    private static long LayoutBytes(int d, int q, int k) => 4L * (q * d + k * (d + 1) + k * d + q * k + q * d + 3 * q);

    [Theory]
    [InlineData(64, 48 * 1024 - 1024)]
    [InlineData(80, 48 * 1024 - 1024)]
    [InlineData(128, 48 * 1024 - 1024)]
    [InlineData(128, 227 * 1024 - 1024)] // H100 / H200 opt-in shared memory
    [InlineData(256, 99 * 1024 - 1024)]
    public void ChoosesTheLargestKeyTileThatFits(int headDim, int limit)
    {
        var shape = CudaBackend.TiledAttentionShape(headDim, limit);
        Assert.NotNull(shape);
        var (q, k) = shape.Value;
        Assert.Equal(16, q);
        Assert.Equal(LayoutBytes(headDim, q, k), CudaBackend.TiledAttentionSharedBytes(headDim, q, k));
        Assert.True(LayoutBytes(headDim, q, k) <= limit);
        if (k < 64) Assert.True(LayoutBytes(headDim, q, 2 * k) > limit, $"a {2 * k}-key tile would fit too");
    }

    [Fact]
    public void NoTilesWhenEvenTheSmallestDoesNotFit()
    {
        Assert.True(LayoutBytes(1024, 16, 8) > 48 * 1024);
        Assert.Null(CudaBackend.TiledAttentionShape(1024, 48 * 1024 - 1024));
    }
}
