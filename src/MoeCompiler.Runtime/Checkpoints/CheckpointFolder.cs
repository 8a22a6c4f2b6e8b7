using System.Text.Json;
using MoeCompiler.IO;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

public enum CheckpointFormat
{
    Safetensors,
    PyTorch,
}

/// <summary>
/// A checkpoint as Hugging Face ships it: a folder (or one file) of <c>*.safetensors</c> shards, with
/// <c>model.safetensors.index.json</c> when sharded, or <c>pytorch_model*.bin</c> shards with
/// <c>pytorch_model.bin.index.json</c>. Every file is validated when opened; tensors are zero-copy views of the
/// memory-mapped files where the layout allows. Tensors stay valid while the folder is open (or while a
/// <see cref="BoundWeights"/> made from it is).
/// </summary>
public sealed class CheckpointFolder : IDisposable
{
    public const string SafetensorsIndexName = "model.safetensors.index.json";
    public const string PyTorchIndexName = "pytorch_model.bin.index.json";
    /// <summary>The largest index file read (the largest released index, Mixtral's, is about 100 KiB).</summary>
    private const long MaxIndexBytes = 64L << 20;

    private readonly List<ICheckpointFile> _files;
    private readonly Dictionary<string, (ICheckpointFile File, CheckpointTensorInfo Info)> _byKey;
    private readonly string[] _keys;

    private CheckpointFolder(string path, CheckpointFormat format, List<ICheckpointFile> files,
        Dictionary<string, (ICheckpointFile, CheckpointTensorInfo)> byKey)
    {
        Path = path;
        Format = format;
        _files = files;
        _byKey = byKey;
        _keys = byKey.Keys.Order(StringComparer.Ordinal).ToArray();
    }

    public string Path { get; }
    public CheckpointFormat Format { get; }
    public IReadOnlyCollection<string> Keys => _keys;
    public IReadOnlyList<string> Files => _files.Select(f => f.FilePath).ToArray();

    public static CheckpointFolder Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string full = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(full)) return OpenDirectory(full);
        if (!File.Exists(full) && new FileInfo(full).LinkTarget is null) throw new CheckpointException(full, "no such file or folder");
        if (!RegularFile.TryResolve(full, out _, out string problem)) throw new CheckpointException(full, problem);
        string name = System.IO.Path.GetFileName(full);
        if (name.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase))
            return OpenIndex(full, name.StartsWith("pytorch", StringComparison.OrdinalIgnoreCase) ? CheckpointFormat.PyTorch : CheckpointFormat.Safetensors);
        var format = LooksLikeZip(full) ? CheckpointFormat.PyTorch : CheckpointFormat.Safetensors;
        return FromFiles(full, format, new[] { full }, null);
    }

    private static bool LooksLikeZip(string path)
    {
        Span<byte> magic = stackalloc byte[4];
        try
        {
            using var s = File.OpenRead(path);
            return s.ReadAtLeast(magic, 4, throwOnEndOfStream: false) == 4 && magic.SequenceEqual("PK\u0003\u0004"u8);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, "cannot read the file: " + e.Message, e);
        }
    }

    private static CheckpointFolder OpenDirectory(string folder)
    {
        string safetensorsIndex = System.IO.Path.Combine(folder, SafetensorsIndexName);
        if (File.Exists(safetensorsIndex)) return OpenIndex(safetensorsIndex, CheckpointFormat.Safetensors);
        var safetensors = Directory.GetFiles(folder, "*.safetensors").Order(StringComparer.Ordinal).ToArray();
        if (safetensors.Length > 0) return FromFiles(folder, CheckpointFormat.Safetensors, safetensors, null);
        string torchIndex = System.IO.Path.Combine(folder, PyTorchIndexName);
        if (File.Exists(torchIndex)) return OpenIndex(torchIndex, CheckpointFormat.PyTorch);
        var bins = Directory.GetFiles(folder, "pytorch_model*.bin").Order(StringComparer.Ordinal).ToArray();
        if (bins.Length > 0) return FromFiles(folder, CheckpointFormat.PyTorch, bins, null);
        throw new CheckpointException(folder,
            $"no checkpoint here: expected *.safetensors (with {SafetensorsIndexName} if sharded) or pytorch_model*.bin (with {PyTorchIndexName})");
    }

    private static CheckpointFolder OpenIndex(string indexPath, CheckpointFormat format)
    {
        string folder = System.IO.Path.GetDirectoryName(indexPath)!;
        var weightMap = ReadIndex(indexPath);
        var shards = weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)
            .Select(f => System.IO.Path.Combine(folder, f)).ToArray();
        foreach (var shard in shards)
            if (!File.Exists(shard)) throw new CheckpointException(indexPath, $"lists shard '{System.IO.Path.GetFileName(shard)}', which is not in the folder");
        return FromFiles(folder, format, shards, (indexPath, weightMap));
    }

    private static Dictionary<string, string> ReadIndex(string indexPath)
    {
        if (!RegularFile.TryResolve(indexPath, out string resolved, out string problem)) throw new CheckpointException(indexPath, problem);
        if (new FileInfo(resolved).Length > MaxIndexBytes)
            throw new CheckpointException(indexPath, $"index is {new FileInfo(resolved).Length} bytes; an index of tensor names is far below {MaxIndexBytes >> 20} MiB");
        byte[] bytes;
        try { bytes = File.ReadAllBytes(resolved); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(indexPath, "cannot read the index: " + e.Message, e);
        }
        if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw new CheckpointException(indexPath, "index is not valid UTF-8");
        try
        {
            using var doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 16 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointException(indexPath, "index has no 'weight_map' object");
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointException(indexPath, $"weight_map entry '{p.Name}' is not a file name");
                string file = p.Value.GetString()!;
                if (file.Length == 0 || file.Contains('/') || file.Contains('\\') || file is "." or ".." || file.Contains('\0'))
                    throw new CheckpointException(indexPath, $"weight_map entry '{p.Name}' names '{file}', which is not a plain file name in the folder");
                if (!result.TryAdd(p.Name, file))
                    throw new CheckpointException(indexPath, $"weight_map lists '{p.Name}' twice");
            }
            if (result.Count == 0) throw new CheckpointException(indexPath, "weight_map is empty");
            return result;
        }
        catch (JsonException e)
        {
            throw new CheckpointException(indexPath, "index is not valid JSON: " + e.Message, e);
        }
        catch (InvalidOperationException e)
        {
            throw new CheckpointException(indexPath, "index holds an invalid string: " + e.Message, e);
        }
    }

    private static CheckpointFolder FromFiles(string path, CheckpointFormat format, IReadOnlyList<string> files,
        (string Path, Dictionary<string, string> Map)? index)
    {
        var opened = new List<ICheckpointFile>();
        try
        {
            var byKey = new Dictionary<string, (ICheckpointFile, CheckpointTensorInfo)>(StringComparer.Ordinal);
            foreach (var file in files)
            {
                ICheckpointFile f = format == CheckpointFormat.PyTorch ? PyTorchCheckpointFile.Open(file) : SafetensorsFile.Open(file);
                opened.Add(f);
                foreach (var info in f.Tensors)
                {
                    if (byKey.TryGetValue(info.Key, out var other))
                        throw new CheckpointException(path, $"tensor '{info.Key}' is in both {System.IO.Path.GetFileName(other.Item1.FilePath)} and {System.IO.Path.GetFileName(file)}");
                    byKey.Add(info.Key, (f, info));
                }
            }
            if (index is var (indexPath, map))
            {
                foreach (var (key, shard) in map)
                {
                    string listed = key;
                    // a quantised tensor's scales are folded into it and not listed as a key of their own
                    if (!byKey.ContainsKey(key) && key.EndsWith(SafetensorsFile.Int8ScalesSuffix, StringComparison.Ordinal)
                        && byKey.TryGetValue(key[..^SafetensorsFile.Int8ScalesSuffix.Length], out var owner) && owner.Item2.DType is DType d && d.IsQuantized())
                        listed = owner.Item2.Key;
                    if (!byKey.TryGetValue(listed, out var found))
                        throw new CheckpointException(indexPath, $"lists '{key}' in {shard}, but that shard has no such tensor");
                    if (!string.Equals(System.IO.Path.GetFileName(found.Item1.FilePath), shard, StringComparison.Ordinal))
                        throw new CheckpointException(indexPath, $"lists '{key}' in {shard}, but it is in {System.IO.Path.GetFileName(found.Item1.FilePath)}");
                }
            }
            return new CheckpointFolder(path, format, opened, byKey);
        }
        catch
        {
            foreach (var f in opened) f.Dispose();
            throw;
        }
    }

    public bool TryGetInfo(string key, out CheckpointTensorInfo info)
    {
        if (_byKey.TryGetValue(key, out var item)) { info = item.Info; return true; }
        info = null!;
        return false;
    }

    public IEnumerable<CheckpointTensorInfo> Infos => _keys.Select(k => _byKey[k].Info);

    /// <summary>
    /// The tensor for <paramref name="key"/>, or false when the checkpoint has no such key. Throws
    /// <see cref="CheckpointException"/> when the key exists but cannot be used (an unsupported dtype such as I64).
    /// </summary>
    public bool TryGetTensor(string key, out Tensor tensor)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_byKey.TryGetValue(key, out var item)) { tensor = null!; return false; }
        tensor = item.File.GetTensor(key);
        return true;
    }

    public Tensor GetTensor(string key) =>
        TryGetTensor(key, out var t) ? t : throw new CheckpointException(Path, $"no tensor '{key}' in the checkpoint");

    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var f in _files) f.Dispose();
    }
}
