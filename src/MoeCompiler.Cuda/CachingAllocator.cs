namespace MoeCompiler.Cuda;

/// <summary>Raw device memory: what <see cref="CachingAllocator"/> sits on (the driver, or a fake in tests).</summary>
public interface IDeviceMemory
{
    /// <summary>A new block of at least <paramref name="bytes"/>, or 0 when the device is out of memory.</summary>
    nint TryAllocate(long bytes);
    void Free(nint pointer);
}

/// <summary>
/// Caches freed device blocks by rounded size and hands them out again, so the steady state of a forward pass
/// makes no cuMemAlloc/cuMemFree calls (both synchronise the device). All work runs on one stream, so a block freed
/// by one kernel's tensor and reused by a later kernel is ordered correctly without events.
/// Thread-safe: tensors may be released from the finalizer thread.
/// </summary>
public sealed class CachingAllocator : IDisposable
{
    /// <summary>Small blocks round up to this (also the alignment cuMemAlloc guarantees and kernels rely on).</summary>
    public const long SmallGranularity = 512;
    public const long LargeThreshold = 1L << 20;
    /// <summary>Large blocks round up to this, so that slightly different sizes share blocks.</summary>
    public const long LargeGranularity = 2L << 20;

    private readonly IDeviceMemory _memory;
    private readonly Dictionary<long, Stack<nint>> _free = new();
    private readonly Dictionary<nint, long> _live = new();
    private readonly object _lock = new();
    private bool _disposed;

    public CachingAllocator(IDeviceMemory memory)
    {
        _memory = memory;
    }

    /// <summary>Bytes held from the device (in use plus cached).</summary>
    public long ReservedBytes { get; private set; }
    public long InUseBytes { get; private set; }
    public long CachedBytes => ReservedBytes - InUseBytes;
    public int DeviceAllocations { get; private set; }
    public int CacheHits { get; private set; }

    public static long RoundSize(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        if (bytes == 0) return SmallGranularity;
        long granularity = bytes < LargeThreshold ? SmallGranularity : LargeGranularity;
        return checked((bytes + granularity - 1) / granularity * granularity);
    }

    /// <summary>A block of at least <paramref name="bytes"/>; <paramref name="blockBytes"/> is its rounded size.</summary>
    /// <param name="reclaim">Called once when the device is full, before cached blocks are freed and the call retried
    /// (the backend runs the GC there so unreachable tensors hand their blocks back).</param>
    public nint Allocate(long bytes, out long blockBytes, Action? reclaim = null)
    {
        long size = RoundSize(bytes);
        blockBytes = size;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_free.TryGetValue(size, out var stack) && stack.Count > 0)
            {
                nint reused = stack.Pop();
                _live.Add(reused, size);
                InUseBytes += size;
                CacheHits++;
                return reused;
            }
        }
        nint pointer = _memory.TryAllocate(size);
        if (pointer == 0)
        {
            reclaim?.Invoke();
            lock (_lock)
            {
                if (_free.TryGetValue(size, out var stack) && stack.Count > 0)
                {
                    nint reused = stack.Pop();
                    _live.Add(reused, size);
                    InUseBytes += size;
                    CacheHits++;
                    return reused;
                }
            }
            ReleaseCached();
            pointer = _memory.TryAllocate(size);
            if (pointer == 0)
                throw new OutOfMemoryException(
                    $"CUDA device out of memory allocating {size} bytes ({InUseBytes} in use, {ReservedBytes} reserved by this backend)");
        }
        lock (_lock)
        {
            _live.Add(pointer, size);
            ReservedBytes += size;
            InUseBytes += size;
            DeviceAllocations++;
        }
        return pointer;
    }

    /// <summary>Returns a block to the cache (no device call). Unknown pointers are a bug and throw.</summary>
    public void Release(nint pointer)
    {
        lock (_lock)
        {
            if (_disposed) return;
            if (!_live.Remove(pointer, out long size))
                throw new InvalidOperationException($"device block 0x{pointer:x} released twice or never allocated here");
            InUseBytes -= size;
            if (!_free.TryGetValue(size, out var stack)) _free[size] = stack = new Stack<nint>();
            stack.Push(pointer);
        }
    }

    /// <summary>Gives every cached (unused) block back to the device.</summary>
    public void ReleaseCached()
    {
        List<(nint Pointer, long Size)> blocks;
        lock (_lock)
        {
            blocks = _free.SelectMany(p => p.Value.Select(ptr => (ptr, p.Key))).ToList();
            _free.Clear();
            foreach (var (_, size) in blocks) ReservedBytes -= size;
        }
        foreach (var (pointer, _) in blocks) _memory.Free(pointer);
    }

    /// <summary>Frees everything, including blocks still referenced by tensors (they must not be used afterwards).</summary>
    public void Dispose()
    {
        List<nint> all;
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            all = _free.SelectMany(p => p.Value).Concat(_live.Keys).ToList();
            _free.Clear();
            _live.Clear();
            ReservedBytes = InUseBytes = 0;
        }
        foreach (nint pointer in all) _memory.Free(pointer);
    }
}
