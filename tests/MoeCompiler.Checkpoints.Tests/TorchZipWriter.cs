using System.Buffers.Binary;
using System.Text;

namespace MoeCompiler.Checkpoints.Tests;

/// <summary>
/// Writes torch.save-shaped files for tests: a hand-assembled protocol-2 pickle of f32 tensors and a zip in the
/// zip64 form (as torch writes files over 4 GB), stored entries padded to 64-byte data offsets.
/// CRCs are left zero: the reader does not check them (it never reads whole storages at open).
/// </summary>
internal static class TorchZipWriter
{
    public sealed record Storage(string Id, long Elements, Action<Stream> WriteData);
    public sealed record TensorRef(string Key, string StorageId, long Elements, long Offset, long[] Size, long[] Stride);

    public static byte[] Pickle(IEnumerable<TensorRef> tensors)
    {
        var p = new MemoryStream();
        void Bytes(params byte[] b) => p.Write(b);
        void Str(string s) { var b = Encoding.UTF8.GetBytes(s); Bytes((byte)'X'); Span<byte> n = stackalloc byte[4]; BinaryPrimitives.WriteInt32LittleEndian(n, b.Length); p.Write(n); p.Write(b); }
        void Long(long v) { Bytes(0x8a, 8); Span<byte> n = stackalloc byte[8]; BinaryPrimitives.WriteInt64LittleEndian(n, v); p.Write(n); }
        void Global(string m, string n) => Bytes(Encoding.ASCII.GetBytes($"c{m}\n{n}\n"));
        void LongTuple(long[] values) { Bytes((byte)'('); foreach (var v in values) Long(v); Bytes((byte)'t'); }
        Bytes(0x80, 2, (byte)'}', (byte)'(');
        foreach (var t in tensors)
        {
            Str(t.Key);
            Global("torch._utils", "_rebuild_tensor_v2");
            Bytes((byte)'(', (byte)'(');
            Str("storage"); Global("torch", "FloatStorage"); Str(t.StorageId); Str("cpu"); Long(t.Elements);
            Bytes((byte)'t', (byte)'Q');
            Long(t.Offset); LongTuple(t.Size); LongTuple(t.Stride);
            Bytes(0x89);
            Global("collections", "OrderedDict"); Bytes((byte)')', (byte)'R');
            Bytes((byte)'t', (byte)'R');
        }
        Bytes((byte)'u', (byte)'.');
        return p.ToArray();
    }

    public static void Write(string path, string folder, byte[] pickle, IReadOnlyList<Storage> storages)
    {
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        var central = new List<(string Name, long Offset, long Size)>();
        void Entry(string name, long size, Action<Stream> write)
        {
            long offset = file.Position;
            var nameBytes = Encoding.UTF8.GetBytes(name);
            int unpadded = 30 + nameBytes.Length + 20 + 4;
            int padding = (int)((64 - (offset + unpadded) % 64) % 64);
            var header = new byte[30];
            BinaryPrimitives.WriteUInt32LittleEndian(header, 0x04034b50);
            BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(4), 45);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(18), 0xFFFFFFFF);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(22), 0xFFFFFFFF);
            BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(26), (ushort)nameBytes.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(28), (ushort)(20 + 4 + padding));
            file.Write(header);
            file.Write(nameBytes);
            var extra = new byte[20 + 4 + padding];
            BinaryPrimitives.WriteUInt16LittleEndian(extra, 1);
            BinaryPrimitives.WriteUInt16LittleEndian(extra.AsSpan(2), 16);
            BinaryPrimitives.WriteInt64LittleEndian(extra.AsSpan(4), size);
            BinaryPrimitives.WriteInt64LittleEndian(extra.AsSpan(12), size);
            BinaryPrimitives.WriteUInt16LittleEndian(extra.AsSpan(20), 0xCAFE); // padding block, like torch's FB.. field
            BinaryPrimitives.WriteUInt16LittleEndian(extra.AsSpan(22), (ushort)padding);
            file.Write(extra);
            long start = file.Position;
            write(file);
            if (file.Position - start != size) throw new InvalidOperationException($"entry {name} wrote {file.Position - start} bytes, not {size}");
            central.Add((name, offset, size));
        }
        Entry(folder + "/data.pkl", pickle.Length, s => s.Write(pickle));
        foreach (var st in storages) Entry(folder + "/data/" + st.Id, st.Elements * 4, st.WriteData);
        Entry(folder + "/version", 2, s => s.Write("3\n"u8));

        long directoryStart = file.Position;
        foreach (var (name, offset, size) in central)
        {
            var nameBytes = Encoding.UTF8.GetBytes(name);
            var h = new byte[46];
            BinaryPrimitives.WriteUInt32LittleEndian(h, 0x02014b50);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(4), 45);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(6), 45);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(20), 0xFFFFFFFF);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(24), 0xFFFFFFFF);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(28), (ushort)nameBytes.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(30), 28);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(42), 0xFFFFFFFF);
            file.Write(h);
            file.Write(nameBytes);
            var extra = new byte[28];
            BinaryPrimitives.WriteUInt16LittleEndian(extra, 1);
            BinaryPrimitives.WriteUInt16LittleEndian(extra.AsSpan(2), 24);
            BinaryPrimitives.WriteInt64LittleEndian(extra.AsSpan(4), size);
            BinaryPrimitives.WriteInt64LittleEndian(extra.AsSpan(12), size);
            BinaryPrimitives.WriteInt64LittleEndian(extra.AsSpan(20), offset);
            file.Write(extra);
        }
        long directorySize = file.Position - directoryStart;
        long zip64End = file.Position;
        var z = new byte[56];
        BinaryPrimitives.WriteUInt32LittleEndian(z, 0x06064b50);
        BinaryPrimitives.WriteInt64LittleEndian(z.AsSpan(4), 44);
        BinaryPrimitives.WriteUInt16LittleEndian(z.AsSpan(12), 45);
        BinaryPrimitives.WriteUInt16LittleEndian(z.AsSpan(14), 45);
        BinaryPrimitives.WriteInt64LittleEndian(z.AsSpan(24), central.Count);
        BinaryPrimitives.WriteInt64LittleEndian(z.AsSpan(32), central.Count);
        BinaryPrimitives.WriteInt64LittleEndian(z.AsSpan(40), directorySize);
        BinaryPrimitives.WriteInt64LittleEndian(z.AsSpan(48), directoryStart);
        file.Write(z);
        var locator = new byte[20];
        BinaryPrimitives.WriteUInt32LittleEndian(locator, 0x07064b50);
        BinaryPrimitives.WriteInt64LittleEndian(locator.AsSpan(8), zip64End);
        BinaryPrimitives.WriteUInt32LittleEndian(locator.AsSpan(16), 1);
        file.Write(locator);
        var end = new byte[22];
        BinaryPrimitives.WriteUInt32LittleEndian(end, 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(8), 0xFFFF);
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(10), 0xFFFF);
        BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(12), 0xFFFFFFFF);
        BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(16), 0xFFFFFFFF);
        file.Write(end);
    }

    public static Action<Stream> Floats(long count, Func<long, float> value) => s =>
    {
        var buffer = new byte[1 << 20];
        long done = 0;
        while (done < count)
        {
            int n = (int)Math.Min(buffer.Length / 4, count - done);
            for (int i = 0; i < n; i++) BinaryPrimitives.WriteSingleLittleEndian(buffer.AsSpan(i * 4), value(done + i));
            s.Write(buffer, 0, n * 4);
            done += n;
        }
    };
}
