using MoeCompiler.Cuda.Native;

namespace MoeCompiler.Cuda;

/// <summary>
/// Page-locked host memory for small uploads (token ids, row indices, routing weights). Asynchronous copies
/// from it may be captured in a CUDA graph; its chunks are reused only after the stream has been synchronised
/// (<see cref="Reset"/>), so a copy still in flight never sees its source overwritten.
/// </summary>
internal sealed unsafe class PinnedArena : IDisposable
{
    private const long ChunkBytes = 1L << 20;
    private readonly CudaDriver _driver;
    private readonly List<(nint Pointer, long Size)> _chunks = new();
    private int _current;
    private long _offset;

    public PinnedArena(CudaDriver driver)
    {
        _driver = driver;
    }

    /// <summary>Room for <paramref name="bytes"/> (256-byte aligned), valid until the next <see cref="Reset"/>.</summary>
    public nint Take(long bytes)
    {
        long size = (bytes + 255) & ~255L;
        while (_current < _chunks.Count)
        {
            if (_offset + size <= _chunks[_current].Size)
            {
                nint at = _chunks[_current].Pointer + (nint)_offset;
                _offset += size;
                return at;
            }
            _current++;
            _offset = 0;
        }
        long chunk = Math.Max(ChunkBytes, size);
        void* pointer;
        _driver.Check(_driver.cuMemAllocHost(&pointer, (nuint)chunk), "cuMemAllocHost");
        _chunks.Add(((nint)pointer, chunk));
        _current = _chunks.Count - 1;
        _offset = size;
        return (nint)pointer;
    }

    /// <summary>Only after the stream has finished every copy that reads from the arena.</summary>
    public void Reset()
    {
        _current = 0;
        _offset = 0;
    }

    public void Dispose()
    {
        foreach (var (pointer, _) in _chunks) _driver.cuMemFreeHost((void*)pointer);
        _chunks.Clear();
    }
}

/// <summary><see cref="IDeviceMemory"/> over cuMemAlloc / cuMemFree.</summary>
internal sealed unsafe class DriverMemory(CudaDriver driver) : IDeviceMemory
{
    private const int ErrorOutOfMemory = 2;

    public nint TryAllocate(long bytes)
    {
        nint pointer;
        int result = driver.cuMemAlloc(&pointer, (nuint)bytes);
        if (result == ErrorOutOfMemory) return 0;
        driver.Check(result, "cuMemAlloc");
        return pointer;
    }

    public void Free(nint pointer) => driver.cuMemFree(pointer);
}
