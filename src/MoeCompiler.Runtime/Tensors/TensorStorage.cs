using System.Runtime.InteropServices;

namespace MoeCompiler.Runtime.Tensors;

/// <summary>
/// A block of bytes a tensor views. Host storages expose a stable pointer for their whole lifetime:
/// aligned native memory, a pinned managed array, or a read-only view of a memory-mapped file
/// (subclassed by the checkpoint loaders). Device storages (CUDA) set <see cref="IsHost"/> to false.
/// </summary>
public abstract class TensorStorage : IDisposable
{
    public abstract nint Pointer { get; }
    public abstract long ByteLength { get; }
    public virtual bool IsReadOnly => false;
    public virtual bool IsHost => true;
    public bool IsDisposed { get; private set; }
    private List<TensorStorage>? _dependents;

    public void Dispose()
    {
        List<TensorStorage>? dependents;
        lock (this)
        {
            if (IsDisposed) return;
            IsDisposed = true;
            dependents = _dependents;
            _dependents = null;
        }
        Release();
        GC.SuppressFinalize(this);
        if (dependents is not null) foreach (var dependent in dependents) dependent.Dispose();
    }

    /// <summary>Disposes <paramref name="dependent"/> (a copy derived from this storage, such as a backend's packed
    /// form of a weight) when this storage is disposed; at once if it already is.</summary>
    internal void DisposeWith(TensorStorage dependent)
    {
        lock (this)
        {
            if (!IsDisposed)
            {
                (_dependents ??= []).Add(dependent);
                return;
            }
        }
        dependent.Dispose();
    }

    protected abstract void Release();
}

/// <summary>64-byte aligned native memory (cache-line and AVX-512 aligned), owned by the tensor.</summary>
public sealed unsafe class NativeStorage : TensorStorage
{
    public const int Alignment = 64;
    private void* _pointer;
    private readonly long _byteLength;
    private long _capacity;

    /// <summary>Blocks of at least this many bytes go back to a process-wide cache when released (see <see cref="CacheBytes"/>).</summary>
    public const long MinCachedBytes = BlockCache.MinBytes;
    private static readonly BlockCache s_cache = new(128L * 1024 * 1024);

    /// <summary>
    /// Most bytes of released blocks kept for reuse by later allocations of the same size (0: none; default 128 MiB).
    /// A forward pass allocates and releases the same activation shapes layer after layer; glibc serves blocks this
    /// large with a fresh <c>mmap</c> and unmaps them on free, so without the cache every activation of a prefill
    /// (up to 13 MB) is paid again in page faults when it is first written (measured: 17% of a 600-row prefill's
    /// thread time, docs/performance.md). When full, it gives up the blocks of the size classes used longest ago.
    /// </summary>
    public static long CacheBytes
    {
        get => s_cache.Limit;
        set => s_cache.Limit = value;
    }

    /// <summary>Frees every cached block.</summary>
    public static void TrimCache() => s_cache.Trim();

    public NativeStorage(long byteLength, bool zero = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteLength);
        _byteLength = byteLength;
        // Cacheable blocks are allocated at their size class, so that nearby sizes (expert batches of 224 to 494 rows,
        // prompts of varying length) share blocks.
        _capacity = byteLength >= MinCachedBytes ? SizeClass(byteLength) : byteLength;
        _pointer = byteLength >= MinCachedBytes ? s_cache.Rent(ref _capacity) : null;
        if (_pointer == null) _pointer = NativeMemory.AlignedAlloc((nuint)Math.Max(_capacity, 1), Alignment);
        if (zero) NativeMemory.Clear(_pointer, (nuint)byteLength);
    }

    /// <summary>The size rounded up to the next m·2^e with m in 8..15 (at most 12.5% more).</summary>
    internal static long SizeClass(long byteLength)
    {
        int e = Math.Max(0, 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)byteLength) - 3);
        long unit = 1L << e;
        return (byteLength + unit - 1) / unit * unit;
    }

    ~NativeStorage() => Release();

    public override nint Pointer => (nint)_pointer;
    public override long ByteLength => _byteLength;

    protected override void Release()
    {
        if (_pointer != null)
        {
            if (!s_cache.Return(_pointer, _capacity)) NativeMemory.AlignedFree(_pointer);
            _pointer = null;
        }
    }
}

/// <summary>A managed byte array on the pinned object heap: managed memory with a stable address.</summary>
public sealed class ManagedStorage : TensorStorage
{
    private readonly byte[] _array;
    private readonly nint _pointer;

    public ManagedStorage(long byteLength)
    {
        if (byteLength > System.Array.MaxLength) throw new ArgumentOutOfRangeException(nameof(byteLength), "too large for a managed array");
        _array = GC.AllocateArray<byte>((int)byteLength, pinned: true);
        _pointer = Marshal.UnsafeAddrOfPinnedArrayElement(_array, 0);
    }

    public byte[] Array => _array;
    public override nint Pointer => _pointer;
    public override long ByteLength => _array.LongLength;
    protected override void Release() { }
}

/// <summary>
/// Released native blocks kept by size class for reuse (<see cref="NativeStorage.CacheBytes"/>). When a returned block
/// does not fit, blocks of the size class used longest ago (rented, asked for or returned) are freed until it does;
/// so a new prompt length's sizes push out the old ones, while the sizes every layer of a forward pass asks for
/// again stay. Thread-safe (one lock).
/// </summary>
internal sealed unsafe class BlockCache(long limit)
{
    /// <summary>Smaller blocks are not cached (malloc serves them from its own free lists).</summary>
    public const long MinBytes = 256 * 1024;

    private sealed class SizeClass
    {
        public readonly Stack<nint> Blocks = new();
        public long LastUse;
    }

    private readonly Dictionary<long, SizeClass> _classes = [];
    private long _cachedBytes, _clock, _limit = limit;

    public long Limit
    {
        get => Volatile.Read(ref _limit);
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            Volatile.Write(ref _limit, value);
            lock (_classes) EvictUntil(value, keep: null);
        }
    }

    public long CachedBytes { get { lock (_classes) return _cachedBytes; } }

    /// <summary>Blocks of one capacity held now (tests).</summary>
    public int Count(long capacity) { lock (_classes) return _classes.TryGetValue(capacity, out var c) ? c.Blocks.Count : 0; }

    /// <summary>A cached block of <paramref name="capacity"/> bytes, else of the smallest larger class up to 1.5 times
    /// as large (<paramref name="capacity"/> is then set to it), or null; either way the asked class counts as just
    /// used. (Expert batches change their row count from layer to layer: an exact class alone missed most of the time.)</summary>
    public void* Rent(ref long capacity)
    {
        lock (_classes)
        {
            var sizeClass = ClassOf(capacity);
            if (sizeClass.Blocks.Count == 0)
            {
                long wanted = capacity, best = long.MaxValue;
                foreach (var (c, candidate) in _classes)
                    if (c > wanted && c <= wanted + wanted / 2 && c < best && candidate.Blocks.Count > 0) (best, sizeClass) = (c, candidate);
                if (best == long.MaxValue) return null;
                capacity = best;
            }
            nint block = sizeClass.Blocks.Pop();
            _cachedBytes -= capacity;
            return (void*)block;
        }
    }

    /// <summary>Keeps the block for reuse (true) or leaves freeing it to the caller (false: too small, or larger
    /// than the limit).</summary>
    public bool Return(void* block, long capacity)
    {
        if (capacity < MinBytes || capacity > Limit) return false;
        lock (_classes)
        {
            var sizeClass = ClassOf(capacity);
            EvictUntil(Limit - capacity, keep: sizeClass);
            if (_cachedBytes + capacity > Limit) return false;
            sizeClass.Blocks.Push((nint)block);
            _cachedBytes += capacity;
            return true;
        }
    }

    public void Trim()
    {
        lock (_classes)
        {
            foreach (var sizeClass in _classes.Values)
                while (sizeClass.Blocks.TryPop(out nint block)) NativeMemory.AlignedFree((void*)block);
            _classes.Clear();
            _cachedBytes = 0;
        }
    }

    private SizeClass ClassOf(long capacity)
    {
        if (!_classes.TryGetValue(capacity, out var sizeClass)) _classes[capacity] = sizeClass = new SizeClass();
        sizeClass.LastUse = ++_clock;
        return sizeClass;
    }

    /// <summary>Frees blocks, least recently used size class first (never <paramref name="keep"/>'s), until at most
    /// <paramref name="bytes"/> are cached or only <paramref name="keep"/>'s blocks are left.</summary>
    private void EvictUntil(long bytes, SizeClass? keep)
    {
        while (_cachedBytes > bytes)
        {
            long victimCapacity = 0;
            SizeClass? victim = null;
            foreach (var (capacity, sizeClass) in _classes)
                if (sizeClass != keep && sizeClass.Blocks.Count > 0 && (victim is null || sizeClass.LastUse < victim.LastUse))
                    (victim, victimCapacity) = (sizeClass, capacity);
            if (victim is null) return;
            NativeMemory.AlignedFree((void*)victim.Blocks.Pop());
            _cachedBytes -= victimCapacity;
        }
    }
}
