using System.Text;
using System.Text.Json;
using MoeCompiler.Runtime.Tensors;

using MoeCompiler.Runtime.Checkpoints;

namespace MoeCompiler.Tooling;

/// <summary>
/// Writes tensors to a <c>.safetensors</c> file readable by the reference implementation: header JSON padded
/// with spaces so the data starts 8-byte aligned, tensors back to back in the given order. Data is streamed
/// from the tensors' storage (no copy of the whole checkpoint in memory). An existing file is never replaced
/// unless <c>overwrite</c> is set; the file is written under a temporary name and moved into place, so a
/// failure leaves no half-written checkpoint and overwriting a file that is itself mapped is safe.
/// Quantised tensors are written with their scales as a companion tensor <c>key + ".scales"</c>; q4 values are stored as
/// U8 [rows, columns / 2] and the header metadata then names the layout version (docs/quantization.md).
/// </summary>
public static class SafetensorsWriter
{
    private const int DataAlignment = 8;

    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        WriteFlattened(Path.GetFullPath(path), Flatten(path, tensors), metadata, overwrite);
    }

    /// <summary>
    /// Writes tensors whose bytes are produced while writing (a multi-GB random or converted checkpoint never has to
    /// exist in memory). Each callback must write exactly its tensor's byte length; the layout, the temporary file
    /// and the never-overwrite rule are those of <see cref="Write"/>.
    /// </summary>
    public static void WriteStreamed(string path, IReadOnlyList<StreamedTensor> tensors,
        IReadOnlyDictionary<string, string>? metadata = null, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            if (t.Key == "__metadata__") throw new CheckpointException(path, "'__metadata__' cannot be a tensor key");
            if (!seen.Add(t.Key)) throw new CheckpointException(path, $"tensor key '{t.Key}' given twice");
        }
        WriteFile(Path.GetFullPath(path), tensors, metadata, overwrite);
    }

    private static void WriteFlattened(string fullPath, List<KeyValuePair<string, Tensor>> list,
        IReadOnlyDictionary<string, string>? metadata, bool overwrite) =>
        WriteFile(fullPath, list.Select(p => new StreamedTensor(p.Key, p.Value.DType, p.Value.Shape.ToArray(),
            stream => WriteData(stream, p.Value))).ToList(), metadata, overwrite);

    private static void WriteFile(string fullPath, IReadOnlyList<StreamedTensor> tensors,
        IReadOnlyDictionary<string, string>? metadata, bool overwrite)
    {
        if (!overwrite && File.Exists(fullPath))
            throw new CheckpointException(fullPath, "the file exists; refusing to overwrite it (pass overwrite: true to replace it)");

        if (tensors.Any(t => t.DType.IsQuantized()))
        {
            var withFormat = new Dictionary<string, string>(metadata ?? new Dictionary<string, string>(), StringComparer.Ordinal);
            withFormat[SafetensorsFile.QuantizationFormatKey] = SafetensorsFile.QuantizationFormatVersion;
            metadata = withFormat;
        }
        byte[] header = BuildHeader(tensors, metadata);
        string directory = Path.GetDirectoryName(fullPath) ?? ".";
        string temporary = Path.Combine(directory, "." + Path.GetFileName(fullPath) + "." + Guid.NewGuid().ToString("N") + ".partial");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> length = stackalloc byte[8];
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
                stream.Write(length);
                stream.Write(header);
                foreach (var tensor in tensors)
                {
                    long start = stream.Position;
                    tensor.WriteData(stream);
                    if (stream.Position - start != tensor.ByteLength)
                        throw new InvalidOperationException($"tensor '{tensor.Key}' wrote {stream.Position - start} bytes, its header says {tensor.ByteLength}");
                }
            }
            if (overwrite) File.Move(temporary, fullPath, overwrite: true);
            else
            {
                try { File.Move(temporary, fullPath, overwrite: false); }
                catch (IOException) when (File.Exists(fullPath))
                {
                    throw new CheckpointException(fullPath, "the file appeared while writing; refusing to overwrite it");
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(fullPath, "cannot write the checkpoint: " + e.Message, e);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    /// <summary>
    /// Writes tensors as Hugging Face shards into <paramref name="folder"/>: <c>model.safetensors</c> when they fit
    /// in one shard of <paramref name="maxShardBytes"/>, else <c>model-0000N-of-0000M.safetensors</c> plus
    /// <c>model.safetensors.index.json</c>. Tensors keep their order; a tensor larger than the limit gets a shard
    /// of its own. Nothing is written if any target file exists and <paramref name="overwrite"/> is false.
    /// Returns the files written.
    /// </summary>
    public static IReadOnlyList<string> WriteSharded(string folder, IEnumerable<KeyValuePair<string, Tensor>> tensors, long maxShardBytes,
        IReadOnlyDictionary<string, string>? metadata = null, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        string root = Path.GetFullPath(folder);
        var list = Flatten(root, tensors);
        var shards = new List<List<KeyValuePair<string, Tensor>>>();
        long current = 0;
        foreach (var item in list)
        {
            // an int8 tensor and its scales stay in one shard: the reader pairs them per file
            bool companion = item.Key.EndsWith(SafetensorsFile.Int8ScalesSuffix, StringComparison.Ordinal) && shards.Count > 0
                             && shards[^1][^1].Value.DType.IsQuantized() && shards[^1][^1].Key + SafetensorsFile.Int8ScalesSuffix == item.Key;
            if (shards.Count == 0 || (!companion && current > 0 && current + item.Value.ByteLength > maxShardBytes))
            {
                shards.Add(new List<KeyValuePair<string, Tensor>>());
                current = 0;
            }
            shards[^1].Add(item);
            current += item.Value.ByteLength;
        }
        if (shards.Count == 0) shards.Add(new List<KeyValuePair<string, Tensor>>());
        var names = shards.Count == 1
            ? new[] { "model.safetensors" }
            : Enumerable.Range(1, shards.Count).Select(i => $"model-{i:D5}-of-{shards.Count:D5}.safetensors").ToArray();
        string indexPath = Path.Combine(root, CheckpointFolder.SafetensorsIndexName);
        var targets = names.Select(n => Path.Combine(root, n)).Concat(shards.Count > 1 ? new[] { indexPath } : Array.Empty<string>()).ToList();
        if (!overwrite)
            foreach (var target in targets)
                if (File.Exists(target)) throw new CheckpointException(target, "the file exists; refusing to overwrite it (pass overwrite: true to replace it)");
        Directory.CreateDirectory(root);
        for (int i = 0; i < shards.Count; i++) WriteFlattened(Path.Combine(root, names[i]), shards[i], metadata, overwrite);
        if (shards.Count > 1)
        {
            using var buffer = new MemoryStream();
            using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
            {
                json.WriteStartObject();
                json.WriteStartObject("metadata");
                json.WriteNumber("total_size", list.Sum(p => p.Value.ByteLength));
                json.WriteEndObject();
                json.WriteStartObject("weight_map");
                var map = shards.SelectMany((shard, i) => shard.Select(p => (p.Key, File: names[i])));
                foreach (var (key, file) in map.OrderBy(p => p.Key, StringComparer.Ordinal)) json.WriteString(key, file);
                json.WriteEndObject();
                json.WriteEndObject();
            }
            string temporary = indexPath + "." + Guid.NewGuid().ToString("N") + ".partial";
            File.WriteAllBytes(temporary, buffer.ToArray());
            File.Move(temporary, indexPath, overwrite);
        }
        return targets;
    }

    private static List<KeyValuePair<string, Tensor>> Flatten(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        var list = new List<KeyValuePair<string, Tensor>>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        void Add(string key, Tensor t)
        {
            if (key == "__metadata__") throw new CheckpointException(path, "'__metadata__' cannot be a tensor key");
            if (!seen.Add(key)) throw new CheckpointException(path, $"tensor key '{key}' given twice");
            if (!t.IsHost) throw new CheckpointException(path, $"tensor '{key}' lives on a device; download it first");
            list.Add(new(key, t));
        }
        foreach (var (key, tensor) in tensors)
        {
            ArgumentNullException.ThrowIfNull(tensor);
            Add(key, tensor);
            if (tensor.DType.IsQuantized()) Add(key + SafetensorsFile.Int8ScalesSuffix, tensor.Scales!);
        }
        return list;
    }

    private static byte[] BuildHeader(IReadOnlyList<StreamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata.OrderBy(p => p.Key, StringComparer.Ordinal)) json.WriteString(k, v);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var tensor in tensors)
            {
                json.WriteStartObject(tensor.Key);
                bool q4 = tensor.DType == DType.Q4;
                json.WriteString("dtype", q4 ? "U8" : tensor.DType.SafetensorsName());
                json.WriteStartArray("shape");
                for (int i = 0; i < tensor.Shape.Length; i++)
                    json.WriteNumberValue(q4 && i == tensor.Shape.Length - 1 ? tensor.Shape[i] / 2 : tensor.Shape[i]);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + tensor.ByteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += tensor.ByteLength;
            }
            json.WriteEndObject();
        }
        int unpadded = (int)buffer.Length;
        int padded = (8 + unpadded + DataAlignment - 1) / DataAlignment * DataAlignment - 8;
        var header = new byte[padded];
        buffer.GetBuffer().AsSpan(0, unpadded).CopyTo(header);
        header.AsSpan(unpadded).Fill((byte)' ');
        return header;
    }

    private static unsafe void WriteData(Stream stream, Tensor tensor)
    {
        const int Chunk = 1 << 24;
        byte* p = (byte*)tensor.Data;
        for (long done = 0; done < tensor.ByteLength; done += Chunk)
        {
            int n = (int)Math.Min(Chunk, tensor.ByteLength - done);
            stream.Write(new ReadOnlySpan<byte>(p + done, n));
        }
        GC.KeepAlive(tensor); // its memory must outlive the writes from the raw pointer
    }
}

/// <summary>A tensor described before its bytes exist: <see cref="WriteData"/> writes exactly <see cref="ByteLength"/> bytes.</summary>
public sealed record StreamedTensor(string Key, DType DType, int[] Shape, Action<Stream> WriteData)
{
    public long ByteLength
    {
        get
        {
            long n = 1;
            foreach (int d in Shape) n = checked(n * d);
            return DType.ByteCount(n);
        }
    }
}
