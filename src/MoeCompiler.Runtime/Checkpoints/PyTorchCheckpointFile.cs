using System.IO.Compression;
using System.Text;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// A PyTorch <c>.bin</c> written by <c>torch.save</c> (the zip format of torch ≥ 1.6): <c>{folder}/data.pkl</c>
/// holds the state dict, <c>{folder}/data/{key}</c> each storage's raw little-endian bytes. The pickle is read
/// by <see cref="RestrictedUnpickler"/>, which executes nothing. Contiguous tensors in stored (uncompressed)
/// entries are views of the mapped file; non-contiguous or compressed ones are copied once.
/// </summary>
public sealed class PyTorchCheckpointFile : IDisposable, ICheckpointFile
{
    private const int MaxPickleBytes = 1 << 30;

    private readonly MappedFileStorage _storage;
    private readonly string _folder;
    private readonly Dictionary<string, ZipEntry> _zip;
    private readonly Dictionary<string, (TorchTensorRef Ref, CheckpointTensorInfo Info)> _tensors;
    private readonly Dictionary<string, TensorStorage> _inflated = new(StringComparer.Ordinal);
    private bool _disposed;

    private PyTorchCheckpointFile(string path, MappedFileStorage storage, string folder, Dictionary<string, ZipEntry> zip,
        Dictionary<string, (TorchTensorRef, CheckpointTensorInfo)> tensors)
    {
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
            return new PyTorchCheckpointFile(path, storage, folder, zip, tensors);
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

    private static byte[] ReadEntryBytes(string path, MappedFileStorage storage, ZipEntry entry, int maxBytes = MaxPickleBytes)
    {
        if (entry.Size > maxBytes) throw new CheckpointException(path, $"zip entry '{entry.Name}' is unexpectedly large ({entry.Size} bytes)");
        if (entry.Method == ZipEntry.Stored) return storage.Bytes(entry.DataOffset, (int)entry.Size).ToArray();
        var result = new byte[entry.Size];
        Inflate(path, storage, entry, result);
        return result;
    }

    private static unsafe void Inflate(string path, MappedFileStorage storage, ZipEntry entry, Span<byte> destination)
    {
        try
        {
            using var compressed = new UnmanagedMemoryStream((byte*)storage.Pointer + entry.DataOffset, entry.CompressedSize);
            using var inflater = new DeflateStream(compressed, CompressionMode.Decompress);
            int done = 0;
            while (done < destination.Length)
            {
                int n = inflater.Read(destination[done..]);
                if (n == 0) break;
                done += n;
            }
            if (done != destination.Length || inflater.Read(stackalloc byte[1]) != 0)
                throw new CheckpointException(path, $"zip entry '{entry.Name}' does not inflate to its declared {entry.Size} bytes");
        }
        catch (InvalidDataException e)
        {
            throw new CheckpointException(path, $"zip entry '{entry.Name}' is corrupt: {e.Message}", e);
        }
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
            var storage = new NativeStorage(entry.Size, zero: false);
            unsafe { Inflate(FilePath, _storage, entry, new Span<byte>((void*)storage.Pointer, checked((int)entry.Size))); }
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
