using System.IO.MemoryMappedFiles;

namespace MoeCompiler.Runtime.Tensors;

/// <summary>
/// A read-only view of a region of a memory-mapped file. The pointer is stable until disposal, so tensors can use
/// checkpoint weights in place. The view is mapped read-only and shared (PROT_READ, MAP_SHARED): the user's file
/// cannot be written through it (a stray write faults), and, unlike a copy-on-write (private, writable) mapping, it
/// is not charged to the commit limit, so a checkpoint larger than RAM maps (Linux's heuristic overcommit refuses a
/// single private writable mapping bigger than RAM + swap: a 32 GB bf16 checkpoint on a 24 GB machine failed with
/// ENOMEM). Writes are refused earlier anyway: <see cref="IsReadOnly"/> is checked by every writer. Several owners (a checkpoint folder and the bound weights
/// made from it) can share one mapping through <see cref="AddReference"/> / <see cref="ReleaseReference"/>: it is
/// unmapped when the last of them lets go.
/// </summary>
public sealed unsafe class MappedFileStorage : TensorStorage
{
    private readonly MemoryMappedViewAccessor _view;
    private readonly MemoryMappedFile? _ownedFile;
    private byte* _base;
    private readonly long _byteLength;
    private int _references = 1;

    /// <summary>Maps <paramref name="length"/> bytes at <paramref name="offset"/> of an already open mapping,
    /// which the caller keeps alive at least as long as this storage.</summary>
    public MappedFileStorage(MemoryMappedFile file, long offset, long length, string? filePath = null)
        : this(file, offset, length, filePath, ownsFile: false)
    {
    }

    private MappedFileStorage(MemoryMappedFile file, long offset, long length, string? filePath, bool ownsFile)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        FilePath = filePath;
        _ownedFile = ownsFile ? file : null;
        // A zero-length view would map the whole file; map one byte instead and report zero.
        _view = file.CreateViewAccessor(offset, Math.Max(length, 1), MemoryMappedFileAccess.Read);
        _byteLength = length;
        byte* pointer = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _base = pointer + _view.PointerOffset;
    }

    /// <summary>Maps the region [offset, offset+length) of the file at <paramref name="path"/> (the whole file by default).</summary>
    public static MappedFileStorage Open(string path, long offset = 0, long? length = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        // The length of a symbolic link is that of its target's name: measure (and map) the file it leads to.
        if (!MoeCompiler.IO.RegularFile.TryResolve(path, out string resolved, out string problem))
            throw new IOException($"{path}: {problem}");
        long fileLength = new FileInfo(resolved).Length;
        long size = length ?? fileLength - offset;
        if (offset < 0 || size < 0 || offset > fileLength || size > fileLength - offset)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{path}: region [{offset}, {offset + size}) is outside the file's {fileLength} bytes");
        if (fileLength == 0) return new MappedFileStorage(CreateEmpty(), 0, 0, path, ownsFile: true);
        var stream = new FileStream(resolved, FileMode.Open, FileAccess.Read, FileShare.Read);
        MemoryMappedFile file;
        try
        {
            file = MemoryMappedFile.CreateFromFile(stream, mapName: null, capacity: 0, MemoryMappedFileAccess.Read,
                HandleInheritability.None, leaveOpen: false);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
        try
        {
            return new MappedFileStorage(file, offset, size, path, ownsFile: true);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static MemoryMappedFile CreateEmpty() => MemoryMappedFile.CreateNew(mapName: null, capacity: 1, MemoryMappedFileAccess.ReadWrite);

    public string? FilePath { get; }
    public override nint Pointer => (nint)_base;
    public override long ByteLength => _byteLength;
    public override bool IsReadOnly => true;

    /// <summary>Bytes [offset, offset+count) of the mapped region, bounds-checked.</summary>
    public ReadOnlySpan<byte> Bytes(long offset, int count)
    {
        if (offset < 0 || count < 0 || offset > _byteLength - count)
            throw new ArgumentOutOfRangeException(nameof(offset), $"bytes [{offset}, {offset + count}) outside a mapping of {_byteLength}");
        return new ReadOnlySpan<byte>(_base + offset, count);
    }

    /// <summary>
    /// Drops this process's page mappings of [offset, offset+length) (whole pages inside it) without changing what the
    /// view reads: a later access maps the pages again from the page cache. Used once a backend has its own copy of a
    /// weight, so the file's pages stop counting in this process's resident memory. Linux only; a no-op elsewhere.
    /// </summary>
    internal void ReleaseResidentPages(long offset, long length)
    {
        if (!OperatingSystem.IsLinux() || _base == null || offset < 0 || length <= 0 || offset + length > _byteLength) return;
        long page = Environment.SystemPageSize;
        long first = ((long)_base + offset + page - 1) / page * page;
        long last = ((long)_base + offset + length) / page * page;
        if (last > first) _ = madvise((void*)first, (nuint)(last - first), MadviseDontNeed);
    }

    private const int MadviseDontNeed = 4;

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int madvise(void* address, nuint length, int advice);

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
        if (_base != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _base = null;
        }
        _view.Dispose();
        _ownedFile?.Dispose();
    }
}
