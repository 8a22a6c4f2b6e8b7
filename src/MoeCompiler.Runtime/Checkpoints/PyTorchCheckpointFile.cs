using System.IO.Compression;
using System.Text;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// A PyTorch <c>.bin</c> written by <c>torch.save</c> (the zip format of torch ≥ 1.6): <c>{folder}/data.pkl</c>
/// holds the state dict, <c>{folder}/data/{key}</c> each storage's raw little-endian bytes. The pickle is read
/// by <see cref="RestrictedUnpickler"/>, which executes nothing. Contiguous tensors in stored (uncompressed)
/// entries are views of the mapped file; non-contiguous or compressed ones are copied once.
/// A deflated storage is inflated only as far as its tensors reach, and a file whose deflated storages would
/// need far more memory than their tensors hold is refused when it is opened, before anything is allocated
/// (see "Untrusted input" in docs/architecture.md).
/// </summary>
public sealed class PyTorchCheckpointFile : IDisposable, ICheckpointFile
{
    // A state dict pickle takes a few hundred bytes per tensor: 64 MiB is ~200 000 tensors.
    internal const int MaxPickleBytes = 64 << 20;

    // A deflated storage may hold at most this much more than the bytes of the tensors that view it (a slice of a
    // larger tensor is legitimate; a 2-element view of a 2 GB storage only makes the reader allocate).
    internal const int InflateSlackFactor = 2;
    internal const int InflateSlackBytes = 4096;

    private readonly MappedFileStorage _storage;
    private readonly string _folder;
    private readonly Dictionary<string, ZipEntry> _zip;
    private readonly Dictionary<string, (TorchTensorRef Ref, CheckpointTensorInfo Info)> _tensors;
    private readonly Dictionary<string, long> _inflateBytes;
    private readonly Dictionary<string, TensorStorage> _inflated = new(StringComparer.Ordinal);
    private bool _disposed;

    private PyTorchCheckpointFile(string path, MappedFileStorage storage, string folder, Dictionary<string, ZipEntry> zip,
        Dictionary<string, (TorchTensorRef, CheckpointTensorInfo)> tensors, Dictionary<string, long> inflateBytes)
    {
        _inflateBytes = inflateBytes;
        FilePath = path;
        _storage = storage;
        _folder = folder;
        _zip = zip;
        _tensors = tensors;
    }

    public string FilePath { get; }
    public IEnumerable<string> Keys => _tensors.Keys;
    public IEnumerable<CheckpointTensorInfo> Tensors => _tensors.Values.Select(t => t.Info);

    public static PyTorchCheckpointFile Open(string path)
    {
        var storage = CheckpointMapping.Open(path);
        try
        {
            if (storage.ByteLength < 4 || !storage.Bytes(0, 4).SequenceEqual("PK\u0003\u0004"u8))
                throw new CheckpointException(path,
                    "not a zip archive: only the zip format of torch.save (PyTorch ≥ 1.6) is read; re-save legacy checkpoints with a newer torch");
            var zip = StoredZipReader.ReadEntries(path, storage);
            string folder = FindFolder(path, zip);
            CheckVersionEntries(path, storage, zip, folder);
            var pickleEntry = zip[folder + "/data.pkl"];
            if (pickleEntry.Size > MaxPickleBytes)
                throw new CheckpointException(path, $"{pickleEntry.Name} is {pickleEntry.Size} bytes, larger than any state dict pickle");
            byte[] pickle = ReadEntryBytes(path, storage, pickleEntry);
            var unpickler = new RestrictedUnpickler(path + ":" + pickleEntry.Name, pickle);
            object? root = unpickler.Load();
            var tensors = CollectTensors(path, root, zip, folder);
            var inflateBytes = DeflatedStorageExtents(path, tensors, zip, folder);
            return new PyTorchCheckpointFile(path, storage, folder, zip, tensors, inflateBytes);
        }
        catch
        {
            storage.ReleaseReference();
            throw;
        }
    }

    private static string FindFolder(string path, Dictionary<string, ZipEntry> zip)
    {
        var candidates = zip.Keys.Where(n => n.EndsWith("/data.pkl", StringComparison.Ordinal) && n.IndexOf('/') == n.Length - 9).ToList();
        if (candidates.Count == 0)
            throw new CheckpointException(path, "zip has no '<folder>/data.pkl' entry: not a torch.save checkpoint");
        if (candidates.Count > 1)
            throw new CheckpointException(path, $"zip has {candidates.Count} data.pkl entries ({string.Join(", ", candidates)})");
        string folder = candidates[0][..^9];
        var stray = zip.Keys.FirstOrDefault(n => !n.StartsWith(folder + "/", StringComparison.Ordinal));
        if (stray is not null)
            throw new CheckpointException(path, $"zip entry '{stray}' lies outside the archive folder '{folder}/'");
        return folder;
    }

    private static void CheckVersionEntries(string path, MappedFileStorage storage, Dictionary<string, ZipEntry> zip, string folder)
    {
        if (zip.TryGetValue(folder + "/version", out var version))
        {
            string text = Encoding.ASCII.GetString(ReadEntryBytes(path, storage, version, 64)).Trim();
            if (!int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int v) || v < 1 || v > 10)
                throw new CheckpointException(path, $"'{version.Name}' holds '{text}', not a torch serialization version this reader knows");
        }
        if (zip.TryGetValue(folder + "/byteorder", out var byteOrder))
        {
            string text = Encoding.ASCII.GetString(ReadEntryBytes(path, storage, byteOrder, 64)).Trim();
            if (text != "little")
                throw new CheckpointException(path, $"storages are stored {text}-endian; only little-endian checkpoints are read");
        }
    }

    private static unsafe byte[] ReadEntryBytes(string path, MappedFileStorage storage, ZipEntry entry, int maxBytes = MaxPickleBytes)
    {
        if (entry.Size > maxBytes) throw new CheckpointException(path, $"zip entry '{entry.Name}' is unexpectedly large ({entry.Size} bytes)");
        if (entry.Method == ZipEntry.Stored) return storage.Bytes(entry.DataOffset, (int)entry.Size).ToArray();
        var result = new byte[entry.Size];
        fixed (byte* destination = result) Inflate(path, storage, entry, destination, result.Length);
        return result;
    }

    /// <summary>
    /// Inflates the first <paramref name="length"/> bytes of a deflated entry. When that is the whole entry, the
    /// stream must end exactly there; a prefix stops early, so bytes no tensor reads are never inflated.
    /// </summary>
    private static unsafe void Inflate(string path, MappedFileStorage storage, ZipEntry entry, byte* destination, long length)
    {
        try
        {
            using var compressed = new UnmanagedMemoryStream((byte*)storage.Pointer + entry.DataOffset, entry.CompressedSize);
            using var inflater = new DeflateStream(compressed, CompressionMode.Decompress);
            long done = 0;
            while (done < length)
            {
                // spans are int-sized: storages past 2 GiB are inflated in pieces
                int chunk = (int)Math.Min(length - done, 1 << 30);
                int n = inflater.Read(new Span<byte>(destination + done, chunk));
                if (n == 0) break;
                done += n;
            }
            if (done != length || (length == entry.Size && inflater.Read(stackalloc byte[1]) != 0))
                throw new CheckpointException(path, $"zip entry '{entry.Name}' does not inflate to its declared {entry.Size} bytes");
        }
        catch (InvalidDataException e)
        {
            throw new CheckpointException(path, $"zip entry '{entry.Name}' is corrupt: {e.Message}", e);
        }
        finally
        {
            GC.KeepAlive(storage); // the inflater reads the mapping through a raw pointer
        }
    }

    /// <summary>
    /// For each deflated storage, how many bytes its tensors reach into: the prefix that will be inflated. Refuses,
    /// before anything is allocated, a storage whose prefix is far larger than the tensors that view it.
    /// </summary>
    private static Dictionary<string, long> DeflatedStorageExtents(
        string path, Dictionary<string, (TorchTensorRef Ref, CheckpointTensorInfo Info)> tensors, Dictionary<string, ZipEntry> zip, string folder)
    {
        var reach = new Dictionary<string, (long Extent, long ViewBytes)>(StringComparer.Ordinal);
        foreach (var (t, _) in tensors.Values)
        {
            string entryName = folder + "/data/" + t.Storage.Key;
            if (zip[entryName].Method != ZipEntry.Deflated) continue;
            CheckpointDTypes.TryGetSafetensorsSize(t.Storage.DTypeName, out int elementSize);
            // CheckExtent has bounded every element of the view by the storage, whose byte size fits a long.
            long elements = 1, last = t.StorageOffset;
            for (int i = 0; i < t.Size.Length; i++)
            {
                elements *= t.Size[i];
                if (t.Size[i] > 0) last += (t.Size[i] - 1) * t.Stride[i];
            }
            long extent = elements == 0 ? 0 : (last + 1) * elementSize;
            var (previousExtent, previousBytes) = reach.GetValueOrDefault(entryName);
            long bytes = elements * elementSize;
            reach[entryName] = (Math.Max(previousExtent, extent), previousBytes > long.MaxValue - bytes ? long.MaxValue : previousBytes + bytes);
        }
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (entryName, (extent, viewBytes)) in reach)
        {
            if ((extent - InflateSlackBytes) / InflateSlackFactor > viewBytes)
                throw new CheckpointException(path,
                    $"deflated storage '{entryName}' would have to be inflated to {extent} bytes for tensors that hold only {viewBytes} bytes; " +
                    "refusing to allocate that (store the zip uncompressed, as torch.save does, or save the tensors with .clone())");
            result[entryName] = extent;
        }
        return result;
    }

    private static Dictionary<string, (TorchTensorRef, CheckpointTensorInfo)> CollectTensors(
        string path, object? root, Dictionary<string, ZipEntry> zip, string folder)
    {
        if (root is not PyDict dict)
            throw new CheckpointException(path, $"the pickle holds {RestrictedUnpickler.Describe(root)}, not a state dict");
        var tensors = new Dictionary<string, (TorchTensorRef, CheckpointTensorInfo)>(StringComparer.Ordinal);
        foreach (var (k, v) in dict.Items)
        {
            if (k is not string key) throw new CheckpointException(path, $"state dict key {RestrictedUnpickler.Describe(k)} is not a string");
            if (v is not TorchTensorRef t) throw new CheckpointException(path, $"state dict entry '{key}' is {RestrictedUnpickler.Describe(v)}, not a tensor");
            var shape = new int[t.Size.Length];
            for (int i = 0; i < shape.Length; i++)
                shape[i] = t.Size[i] <= int.MaxValue ? (int)t.Size[i] : throw new CheckpointException(path, $"tensor '{key}': dimension {t.Size[i]} is too large");
            CheckExtent(path, key, t);
            string entryName = folder + "/data/" + t.Storage.Key;
            if (!zip.TryGetValue(entryName, out var entry))
                throw new CheckpointException(path, $"tensor '{key}' uses storage '{t.Storage.Key}' but the zip has no entry '{entryName}'");
            CheckpointDTypes.TryGetSafetensorsSize(t.Storage.DTypeName, out int elementSize);
            if (t.Storage.Elements > long.MaxValue / elementSize || entry.Size != t.Storage.Elements * elementSize)
                throw new CheckpointException(path,
                    $"storage entry '{entryName}' is {entry.Size} bytes but holds {t.Storage.Elements} {t.Storage.DTypeName} elements ({t.Storage.Elements * elementSize} bytes)");
            var info = new CheckpointTensorInfo(key, t.Storage.DTypeName, CheckpointDTypes.FromName(t.Storage.DTypeName), shape, path);
            tensors[key] = (t, info);
        }
        return tensors;
    }

    /// <summary>Every element the size/stride/offset addresses must lie inside the storage.</summary>
    private static void CheckExtent(string path, string key, TorchTensorRef t)
    {
        try
        {
            checked
            {
                long elements = 1;
                foreach (long d in t.Size) elements *= d;
                if (elements == 0) { if (t.StorageOffset <= t.Storage.Elements) return; }
                else if (elements > t.Storage.Elements)
                {
                    // Only a view that repeats elements (stride 0, an expand()) can be larger than its storage;
                    // copying it out could take any amount of memory, so it is refused.
                    throw new CheckpointException(path,
                        $"tensor '{key}' has {elements} elements but its storage only {t.Storage.Elements} (an expanded view); re-save it with .contiguous()");
                }
                else
                {
                    long last = t.StorageOffset;
                    for (int i = 0; i < t.Size.Length; i++) last += (t.Size[i] - 1) * t.Stride[i];
                    if (last < t.Storage.Elements) return;
                }
            }
        }
        catch (OverflowException) { }
        throw new CheckpointException(path,
            $"tensor '{key}' (offset {t.StorageOffset}, size [{string.Join(", ", t.Size)}], stride [{string.Join(", ", t.Stride)}]) reaches outside its {t.Storage.Elements}-element storage");
    }

    private static bool IsContiguous(TorchTensorRef t)
    {
        long expected = 1;
        for (int i = t.Size.Length - 1; i >= 0; i--)
        {
            if (t.Size[i] != 1 && t.Stride[i] != expected) return false;
            expected *= t.Size[i];
        }
        return true;
    }

    public Tensor GetTensor(string key)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_tensors.TryGetValue(key, out var item)) throw new CheckpointException(FilePath, $"no tensor '{key}'");
        var (t, info) = item;
        if (info.DType is not DType dtype)
            throw new CheckpointException(FilePath, CheckpointDTypes.UnsupportedMessage(key, info.DTypeName));
        if (dtype == DType.I8)
            throw new CheckpointException(FilePath, $"int8 tensor '{key}': PyTorch checkpoints carry no scales; quantise from a float checkpoint instead");
        var entry = _zip[_folder + "/data/" + t.Storage.Key];
        TensorStorage source;
        long baseOffset;
        if (entry.Method == ZipEntry.Stored)
        {
            source = _storage;
            baseOffset = entry.DataOffset;
        }
        else
        {
            source = InflatedStorage(entry);
            baseOffset = 0;
        }
        int elementSize = dtype.SizeInBytes();
        if (IsContiguous(t))
            return SafetensorsFile.View(source, baseOffset + t.StorageOffset * elementSize, dtype, info.Shape, key, null, 0);
        return Gather(source, baseOffset, t, dtype, info.Shape, key);
    }

    private TensorStorage InflatedStorage(ZipEntry entry)
    {
        lock (_inflated)
        {
            if (_inflated.TryGetValue(entry.Name, out var s)) return s;
            long length = _inflateBytes.GetValueOrDefault(entry.Name);
            var storage = new NativeStorage(Math.Max(length, 1), zero: false);
            try
            {
                unsafe { Inflate(FilePath, _storage, entry, (byte*)storage.Pointer, length); }
            }
            catch
            {
                storage.Dispose();
                throw;
            }
            _inflated.Add(entry.Name, storage);
            return storage;
        }
    }

    /// <summary>Copies a strided tensor into a new contiguous one (bounds were checked when the file was opened).</summary>
    private static unsafe Tensor Gather(TensorStorage source, long baseOffset, TorchTensorRef t, DType dtype, int[] shape, string key)
    {
        var result = Tensor.Allocate(dtype, shape);
        int elementSize = dtype.SizeInBytes();
        byte* src = (byte*)source.Pointer + baseOffset;
        byte* dst = (byte*)result.Data;
        int rank = shape.Length;
        var index = new long[rank];
        for (long n = 0; n < result.Length; n++)
        {
            long element = t.StorageOffset;
            for (int d = 0; d < rank; d++) element += index[d] * t.Stride[d];
            Buffer.MemoryCopy(src + element * elementSize, dst + n * elementSize, elementSize, elementSize);
            for (int d = rank - 1; d >= 0; d--)
            {
                if (++index[d] < shape[d]) break;
                index[d] = 0;
            }
        }
        GC.KeepAlive(source); // its memory must outlive the copies from its raw pointer
        return new Tensor(result.Storage, 0, dtype, shape, key);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _storage.ReleaseReference();
    }
}
