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
    private readonly long _byteLength, _capacity;

    /// <summary>Blocks of at least this many bytes go back to a process-wide cache when released (see <see cref="CacheBytes"/>).</summary>
    public const long MinCachedBytes = 256 * 1024;
    private static readonly Dictionary<long, Stack<nint>> s_cache = [];
    private static long s_cachedBytes;

    /// <summary>
    /// Most bytes of released blocks kept for reuse by later allocations of the same size (0: none; default 128 MiB).
    /// A forward pass allocates and releases the same activation shapes layer after layer; glibc serves blocks this
    /// large with a fresh <c>mmap</c> and unmaps them on free, so without the cache every activation of a prefill
    /// (up to 13 MB) is paid again in page faults when it is first written (measured: 17% of a 600-row prefill's
    /// thread time, docs/performance.md).
    /// </summary>
    public static long CacheBytes
    {
        get => Volatile.Read(ref s_cacheLimit);
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            Volatile.Write(ref s_cacheLimit, value);
            if (value == 0) TrimCache();
        }
    }
    private static long s_cacheLimit = 128L * 1024 * 1024;

    /// <summary>Frees every cached block.</summary>
    public static void TrimCache()
    {
        lock (s_cache)
        {
            foreach (var stack in s_cache.Values)
                while (stack.TryPop(out nint p)) NativeMemory.AlignedFree((void*)p);
            s_cache.Clear();
            s_cachedBytes = 0;
        }
    }

    public NativeStorage(long byteLength, bool zero = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteLength);
        _byteLength = byteLength;
        // Cacheable blocks are allocated at their size class, so that nearby sizes (expert batches of 224 to 494 rows,
        // prompts of varying length) share blocks.
        _capacity = byteLength >= MinCachedBytes ? SizeClass(byteLength) : byteLength;
        _pointer = byteLength >= MinCachedBytes ? Rent(_capacity) : null;
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

    private static void* Rent(long capacity)
    {
        lock (s_cache)
        {
            if (!s_cache.TryGetValue(capacity, out var stack) || !stack.TryPop(out nint p)) return null;
            s_cachedBytes -= capacity;
            return (void*)p;
        }
    }

    private static bool Return(void* pointer, long capacity)
    {
        if (capacity < MinCachedBytes) return false;
        long limit = Volatile.Read(ref s_cacheLimit);
        if (capacity > limit) return false;
        lock (s_cache)
        {
            // Full: the cached sizes are not the ones in use any more (another prompt length); start over.
            if (s_cachedBytes + capacity > limit)
            {
                foreach (var blocks in s_cache.Values)
                    while (blocks.TryPop(out nint p)) NativeMemory.AlignedFree((void*)p);
                s_cachedBytes = 0;
            }
            if (!s_cache.TryGetValue(capacity, out var stack)) s_cache[capacity] = stack = new Stack<nint>();
            stack.Push((nint)pointer);
            s_cachedBytes += capacity;
            return true;
        }
    }

    ~NativeStorage() => Release();

    public override nint Pointer => (nint)_pointer;
    public override long ByteLength => _byteLength;

    protected override void Release()
    {
        if (_pointer != null)
        {
            if (!Return(_pointer, _capacity)) NativeMemory.AlignedFree(_pointer);
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
