using System.Runtime.InteropServices;

namespace MoeCompiler.Runtime.Threading;

/// <summary>
/// One aligned f32 scratch buffer per pool thread, grown (never shrunk) before a parallel loop starts so that
/// tasks never allocate. Not thread-safe: one backend call at a time owns it (callers hold a lock).
/// </summary>
public sealed unsafe class ScratchBuffers : IDisposable
{
    private readonly int _threads;
    private float** _buffers;
    private long _capacity;
    private float* _shared;
    private long _sharedCapacity;

    public ScratchBuffers(int threads)
    {
        _threads = threads;
        _buffers = (float**)NativeMemory.AllocZeroed((nuint)threads, (nuint)sizeof(float*));
    }

    ~ScratchBuffers() => Free();

    /// <summary>Makes every thread's buffer hold at least <paramref name="floats"/> values; index the result by worker.</summary>
    public float** Ensure(long floats)
    {
        ObjectDisposedException.ThrowIf(_buffers == null, this);
        if (floats > _capacity)
        {
            long capacity = Math.Max(floats, _capacity * 2);
            for (int i = 0; i < _threads; i++)
            {
                if (_buffers[i] != null) NativeMemory.AlignedFree(_buffers[i]);
                _buffers[i] = (float*)NativeMemory.AlignedAlloc((nuint)(capacity * sizeof(float)), 64);
            }
            _capacity = capacity;
        }
        return _buffers;
    }

    /// <summary>One buffer all threads share (for data one loop produces and the next reads), at least
    /// <paramref name="floats"/> long.</summary>
    public float* Shared(long floats)
    {
        ObjectDisposedException.ThrowIf(_buffers == null, this);
        if (floats > _sharedCapacity)
        {
            if (_shared != null) NativeMemory.AlignedFree(_shared);
            long capacity = Math.Max(floats, _sharedCapacity * 3 / 2);
            _shared = (float*)NativeMemory.AlignedAlloc((nuint)(capacity * sizeof(float)), 64);
            _sharedCapacity = capacity;
        }
        return _shared;
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (_buffers == null) return;
        for (int i = 0; i < _threads; i++)
            if (_buffers[i] != null) NativeMemory.AlignedFree(_buffers[i]);
        NativeMemory.Free(_buffers);
        if (_shared != null) NativeMemory.AlignedFree(_shared);
        _shared = null;
        _sharedCapacity = 0;
        _buffers = null;
        _capacity = 0;
    }
}
