using System.IO.MemoryMappedFiles;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// A whole file mapped into memory, viewed by tensors in place (zero copy). The mapping is copy-on-write so
/// that a stray write changes only this process's pages and never the user's file; the runtime treats it as
/// read-only. Several owners (a <see cref="CheckpointFolder"/>, the <see cref="BoundWeights"/> made from it)
/// share one mapping through a reference count: it is unmapped when the last of them lets go.
/// </summary>
public sealed unsafe class MappedFileStorage : TensorStorage
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _pointer;
    private readonly long _byteLength;
    private int _references = 1;

    private MappedFileStorage(string path, MemoryMappedFile file, MemoryMappedViewAccessor view, long byteLength)
    {
        FilePath = path;
        _file = file;
        _view = view;
        _byteLength = byteLength;
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _pointer = p + view.PointerOffset;
    }

    /// <summary>Maps <paramref name="path"/>; the caller owns the first reference.</summary>
    public static MappedFileStorage Open(string path)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, "cannot open the file: " + e.Message, e);
        }
        long length = stream.Length;
        if (length == 0)
        {
            stream.Dispose();
            throw new CheckpointException(path, "the file is empty");
        }
        MemoryMappedFile? file = null;
        try
        {
            file = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.CopyOnWrite,
                HandleInheritability.None, leaveOpen: false);
            var view = file.CreateViewAccessor(0, length, MemoryMappedFileAccess.CopyOnWrite);
            return new MappedFileStorage(path, file, view, length);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            file?.Dispose();
            stream.Dispose();
            throw new CheckpointException(path, "cannot map the file into memory: " + e.Message, e);
        }
    }

    public string FilePath { get; }
    public override nint Pointer => (nint)_pointer;
    public override long ByteLength => _byteLength;
    public override bool IsReadOnly => true;

    public ReadOnlySpan<byte> Bytes(long offset, int count)
    {
        if (offset < 0 || count < 0 || offset > _byteLength - count)
            throw new ArgumentOutOfRangeException(nameof(offset));
        return new ReadOnlySpan<byte>(_pointer + offset, count);
    }

    /// <summary>Another owner shares the mapping; each call needs one <see cref="ReleaseReference"/>.</summary>
    public MappedFileStorage AddReference()
    {
        if (Interlocked.Increment(ref _references) <= 1)
            throw new ObjectDisposedException(FilePath, "the mapping was already released");
        return this;
    }

    public void ReleaseReference()
    {
        if (Interlocked.Decrement(ref _references) == 0) Dispose();
    }

    protected override void Release()
    {
        if (_pointer == null) return;
        _pointer = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}
