using System.Text;
using System.Text.Json;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// Writes tensors to a <c>.safetensors</c> file readable by the reference implementation: header JSON padded
/// with spaces so the data starts 8-byte aligned, tensors back to back in the given order. Data is streamed
/// from the tensors' storage (no copy of the whole checkpoint in memory). An existing file is never replaced
/// unless <c>overwrite</c> is set; the file is written under a temporary name and moved into place, so a
/// failure leaves no half-written checkpoint and overwriting a file that is itself mapped is safe.
/// Int8 tensors are written with their scales as a companion F32 tensor <c>key + ".scales"</c>.
/// </summary>
public static class SafetensorsWriter
{
    private const int DataAlignment = 8;

    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null, bool overwrite = false)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var list = Flatten(path, tensors);
        string fullPath = Path.GetFullPath(path);
        if (!overwrite && File.Exists(fullPath))
            throw new CheckpointException(fullPath, "the file exists; refusing to overwrite it (pass overwrite: true to replace it)");

        byte[] header = BuildHeader(list, metadata);
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
                foreach (var (_, tensor) in list) WriteData(stream, tensor);
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
            if (tensor.DType == DType.I8) Add(key + SafetensorsFile.Int8ScalesSuffix, tensor.Scales!);
        }
        return list;
    }

    private static byte[] BuildHeader(List<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata)
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
            foreach (var (key, tensor) in tensors)
            {
                json.WriteStartObject(key);
                json.WriteString("dtype", tensor.DType.SafetensorsName());
                json.WriteStartArray("shape");
                foreach (int d in tensor.Shape) json.WriteNumberValue(d);
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
    }

    

    
}
