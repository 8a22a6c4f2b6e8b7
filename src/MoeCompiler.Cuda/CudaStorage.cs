using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda;

/// <summary>
/// Device memory behind a tensor: a block from the backend's <see cref="CachingAllocator"/>, returned to the cache
/// when disposed or when the tensor becomes unreachable (finalizer; the allocator makes no CUDA call there).
/// <see cref="TensorStorage.Pointer"/> is a CUDA device pointer, not host memory.
/// </summary>
public sealed class CudaStorage : TensorStorage
{
    private readonly CachingAllocator _allocator;
    private nint _pointer;

    internal CudaStorage(CachingAllocator allocator, nint pointer, long byteLength, CudaBackend owner)
    {
        _allocator = allocator;
        _pointer = pointer;
        ByteLength = byteLength;
        Owner = owner;
    }

    ~CudaStorage() => Release();

    public CudaBackend Owner { get; }
    public override nint Pointer => _pointer != 0 ? _pointer : throw new ObjectDisposedException(nameof(CudaStorage));
    public override long ByteLength { get; }
    public override bool IsHost => false;

    protected override void Release()
    {
        nint pointer = Interlocked.Exchange(ref _pointer, 0);
        if (pointer != 0) _allocator.Release(pointer);
    }
}
