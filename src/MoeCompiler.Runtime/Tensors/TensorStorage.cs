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

    public NativeStorage(long byteLength, bool zero = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteLength);
        _byteLength = byteLength;
        _pointer = NativeMemory.AlignedAlloc((nuint)Math.Max(byteLength, 1), Alignment);
        if (zero) NativeMemory.Clear(_pointer, (nuint)byteLength);
    }

    ~NativeStorage() => Release();

    public override nint Pointer => (nint)_pointer;
    public override long ByteLength => _byteLength;

    protected override void Release()
    {
        if (_pointer != null)
        {
            NativeMemory.AlignedFree(_pointer);
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
