using System.Buffers.Binary;
using System.Text;

namespace PeerBench;

/// <summary>ggml tensor types this writer emits, with their numeric ids from the GGUF spec (ggml's docs/gguf.md).</summary>
public enum GgmlType : uint
{
    F32 = 0,
    Q4_0 = 2,
    Q8_0 = 8,
    Q4_K = 12,
    BF16 = 30,
}

public static class GgmlTypes
{
    /// <summary>Values per block and bytes per block (docs/gguf.md and ggml's block structs: Q8_0 = f16 scale +
    /// 32 int8; Q4_0 = f16 scale + 16 bytes of nibbles; Q4_K = f16 d + f16 dmin + 12 bytes of 6-bit scales/mins +
    /// 128 bytes of nibbles per super-block of 256).</summary>
    public static (int Values, int Bytes) Block(GgmlType t) => t switch
    {
        GgmlType.F32 => (1, 4),
        GgmlType.BF16 => (1, 2),
        GgmlType.Q8_0 => (32, 34),
        GgmlType.Q4_0 => (32, 18),
        GgmlType.Q4_K => (256, 144),
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "not a type this writer emits"),
    };

    /// <summary>Bytes of a tensor whose innermost dimension is <paramref name="ne0"/> (must be a whole number of blocks).</summary>
    public static long Bytes(GgmlType t, long ne0, long rows)
    {
        var (values, bytes) = Block(t);
        if (ne0 % values != 0) throw new ArgumentException($"{t} needs rows of a multiple of {values} values, got {ne0}");
        return ne0 / values * bytes * rows;
    }

    public static string Name(GgmlType t) => t switch
    {
        GgmlType.F32 => "f32", GgmlType.BF16 => "bf16", GgmlType.Q8_0 => "q8_0", GgmlType.Q4_0 => "q4_0", GgmlType.Q4_K => "q4_k",
        _ => t.ToString(),
    };
}

/// <summary>One tensor of the file: its name, ggml dimensions (ne[0] innermost, i.e. the row length), type, and a
/// callback that writes exactly its bytes when the data section is streamed.</summary>
public sealed record GgufTensor(string Name, long[] Dims, GgmlType Type, Action<Stream, GgufTensor> WriteData)
{
    public long Rows => Dims.Skip(1).Aggregate(1L, (a, b) => a * b);
    public long ByteSize => GgmlTypes.Bytes(Type, Dims[0], Rows);
}

/// <summary>
/// A GGUF v3 writer written from the public specification (ggml docs/gguf.md): little-endian header
/// ("GGUF", version 3, tensor count, metadata count), typed key/value metadata, the tensor infos (name, dimensions,
/// type, offset relative to the data section), padding to the alignment, then the tensor data, each tensor starting
/// at a multiple of the alignment. Streams: metadata and infos are small and written first, tensors one after
/// another through their callbacks, so multi-GB files never sit in memory.
/// </summary>
public sealed class GgufWriter
{
    public const uint Alignment = 32; // the spec's default when general.alignment is absent

    // Value type ids from the spec's gguf_metadata_value_type.
    private const uint TypeUInt32 = 4, TypeInt32 = 5, TypeFloat32 = 6, TypeString = 8, TypeArray = 9;

    private readonly List<(string Key, Action<BinaryWriter> Value)> _metadata = [];
    private readonly List<GgufTensor> _tensors = [];

    public IReadOnlyList<GgufTensor> Tensors => _tensors;

    public void Add(string key, string value) => _metadata.Add((key, w => { w.Write(TypeString); WriteString(w, value); }));
    public void Add(string key, uint value) => _metadata.Add((key, w => { w.Write(TypeUInt32); w.Write(value); }));
    public void Add(string key, float value) => _metadata.Add((key, w => { w.Write(TypeFloat32); w.Write(value); }));

    public void Add(string key, IReadOnlyList<string> values) => _metadata.Add((key, w =>
    {
        w.Write(TypeArray);
        w.Write(TypeString);
        w.Write((ulong)values.Count);
        foreach (string s in values) WriteString(w, s);
    }));

    public void Add(string key, IReadOnlyList<int> values) => _metadata.Add((key, w =>
    {
        w.Write(TypeArray);
        w.Write(TypeInt32);
        w.Write((ulong)values.Count);
        foreach (int v in values) w.Write(v);
    }));

    public void AddTensor(GgufTensor tensor)
    {
        if (tensor.Dims.Length is < 1 or > 4) throw new ArgumentException($"{tensor.Name}: ggml tensors have 1 to 4 dimensions");
        if (_tensors.Any(t => t.Name == tensor.Name)) throw new ArgumentException($"tensor {tensor.Name} added twice");
        _ = tensor.ByteSize; // validates the block size now, not half-way through a multi-GB write
        _tensors.Add(tensor);
    }

    public static long Pad(long offset) => (offset + Alignment - 1) / Alignment * Alignment;

    /// <summary>Bytes of the whole file.</summary>
    public long FileBytes()
    {
        using var counter = new CountingStream();
        WriteHeader(counter);
        long data = Pad(counter.Length);
        foreach (var t in _tensors) data = Pad(data) + t.ByteSize;
        return data;
    }

    /// <summary>Writes the file to <paramref name="path"/>, which must not exist: first to path + ".partial"
    /// (also created new), renamed at the end, so an interrupted write never leaves a file that looks complete.</summary>
    public void Write(string path, Action<long, long>? progress = null)
    {
        if (File.Exists(path)) throw new IOException($"{path} exists; not overwriting it");
        string partial = path + ".partial";
        long total = FileBytes();
        try
        {
            using (var file = new FileStream(partial, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                WriteHeader(file);
                WritePadding(file);
                long dataStart = file.Position;
                foreach (var t in _tensors)
                {
                    WritePadding(file);
                    long before = file.Position;
                    t.WriteData(file, t);
                    long written = file.Position - before;
                    if (written != t.ByteSize)
                        throw new InvalidOperationException($"{t.Name}: wrote {written} bytes, its type and shape need {t.ByteSize}");
                    progress?.Invoke(file.Position, total);
                }
                if (file.Position != total) throw new InvalidOperationException($"wrote {file.Position} bytes, expected {total}");
                _ = dataStart;
            }
            File.Move(partial, path, overwrite: false);
        }
        catch
        {
            // Only the .partial file this call created (CreateNew) is removed.
            if (File.Exists(partial) && !File.Exists(path)) File.Delete(partial);
            throw;
        }
    }

    private void WriteHeader(Stream stream)
    {
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true); // BinaryWriter is little-endian
        w.Write("GGUF"u8);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach (var (key, value) in _metadata)
        {
            WriteString(w, key);
            value(w);
        }
        long offset = 0;
        foreach (var t in _tensors)
        {
            offset = Pad(offset);
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (long d in t.Dims) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset += t.ByteSize;
        }
    }

    private static void WritePadding(Stream s)
    {
        long pad = Pad(s.Position) - s.Position;
        for (long i = 0; i < pad; i++) s.WriteByte(0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length); // gguf_string_t: uint64 length, then the bytes without a terminator
        w.Write(bytes);
    }

    /// <summary>Counts bytes, stores none: sizes the header without building it.</summary>
    private sealed class CountingStream : Stream
    {
        private long _length;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _length;
        public override long Position { get => _length; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => _length += count;
        public override void Write(ReadOnlySpan<byte> buffer) => _length += buffer.Length;
        public override void WriteByte(byte value) => _length++;
    }
}

/// <summary>Little helpers for f16/bf16 bit patterns.</summary>
public static class HalfBits
{
    public static ushort F16(float v) => BitConverter.HalfToUInt16Bits((Half)v);
    public static ushort BF16(float v) => (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16);
    public static void PutF16(Span<byte> dst, float v) => BinaryPrimitives.WriteUInt16LittleEndian(dst, F16(v));
}
