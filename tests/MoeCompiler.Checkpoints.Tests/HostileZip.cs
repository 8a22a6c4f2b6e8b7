using System.Buffers.Binary;
using System.Text;

namespace MoeCompiler.Checkpoints.Tests;

/// <summary>
/// Builds the hostile archives of issue 17 cheaply: a raw deflate stream of a few given bytes followed by any number
/// of zeros, written directly in fixed-Huffman codes (RFC 1951 §3.2.6: one literal, then length-258/distance-1
/// copies, 13 bits per 258 bytes), so a test can make a storage that inflates to gigabytes without compressing
/// gigabytes; and a plain (non-zip64) zip whose entries carry such streams.
/// </summary>
internal static class HostileZip
{
    public sealed record Entry(string Name, byte[] Data, long Size, bool Deflated);

    /// <summary>A deflate stream that inflates to <paramref name="prefix"/> then zeros up to <paramref name="size"/> bytes.</summary>
    public static byte[] DeflatedPrefixThenZeros(ReadOnlySpan<byte> prefix, long size) => DeflatedRepeat(prefix, 0, size);

    /// <summary>A deflate stream that inflates to <paramref name="prefix"/> then <paramref name="fill"/> up to <paramref name="size"/> bytes.</summary>
    public static byte[] DeflatedRepeat(ReadOnlySpan<byte> prefix, byte fill, long size)
    {
        var bits = new BitWriter();
        bits.Write(1, 1); // BFINAL
        bits.Write(1, 2); // BTYPE = fixed Huffman
        foreach (byte b in prefix) Literal(bits, b);
        long done = prefix.Length;
        if (done < size) { Literal(bits, fill); done++; }
        while (size - done >= 258)
        {
            bits.WriteCode(0b11000101, 8); // length code 285 = 258 bytes
            bits.Write(0, 5);              // distance code 0 = 1 byte back
            done += 258;
        }
        while (done < size) { Literal(bits, fill); done++; }
        bits.WriteCode(0, 7); // end of block (256)
        return bits.ToArray();
    }

    private static void Literal(BitWriter bits, byte value)
    {
        if (value < 144) bits.WriteCode(0x30 + value, 8);
        else bits.WriteCode(0x190 + value - 144, 9);
    }

    private sealed class BitWriter
    {
        private readonly MemoryStream _bytes = new();
        private int _current, _count;

        public void Write(int value, int count) // LSB first: header fields and extra bits
        {
            for (int i = 0; i < count; i++) Bit((value >> i) & 1);
        }

        public void WriteCode(int code, int length) // Huffman codes go MSB first
        {
            for (int i = length - 1; i >= 0; i--) Bit((code >> i) & 1);
        }

        private void Bit(int bit)
        {
            _current |= bit << _count;
            if (++_count == 8) { _bytes.WriteByte((byte)_current); _current = 0; _count = 0; }
        }

        public byte[] ToArray()
        {
            if (_count > 0) { _bytes.WriteByte((byte)_current); _current = 0; _count = 0; }
            return _bytes.ToArray();
        }
    }

    /// <summary>A zip of the given entries (sizes below 4 GiB, CRCs left zero: the reader does not check them).</summary>
    public static void Write(string path, IEnumerable<Entry> entries)
    {
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        var central = new MemoryStream();
        int count = 0;
        foreach (var e in entries)
        {
            long offset = file.Position;
            var name = Encoding.UTF8.GetBytes(e.Name);
            var local = new byte[30];
            BinaryPrimitives.WriteUInt32LittleEndian(local, 0x04034b50);
            BinaryPrimitives.WriteUInt16LittleEndian(local.AsSpan(4), 20);
            BinaryPrimitives.WriteUInt16LittleEndian(local.AsSpan(8), (ushort)(e.Deflated ? 8 : 0));
            BinaryPrimitives.WriteUInt32LittleEndian(local.AsSpan(18), (uint)e.Data.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(local.AsSpan(22), (uint)e.Size);
            BinaryPrimitives.WriteUInt16LittleEndian(local.AsSpan(26), (ushort)name.Length);
            file.Write(local);
            file.Write(name);
            file.Write(e.Data);
            var h = new byte[46];
            BinaryPrimitives.WriteUInt32LittleEndian(h, 0x02014b50);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(4), 20);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(6), 20);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(10), (ushort)(e.Deflated ? 8 : 0));
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(20), (uint)e.Data.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(24), (uint)e.Size);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(28), (ushort)name.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(42), (uint)offset);
            central.Write(h);
            central.Write(name);
            count++;
        }
        long directoryOffset = file.Position;
        central.Position = 0;
        central.CopyTo(file);
        var end = new byte[22];
        BinaryPrimitives.WriteUInt32LittleEndian(end, 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(8), (ushort)count);
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(10), (ushort)count);
        BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(12), (uint)central.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(16), (uint)directoryOffset);
        file.Write(end);
    }

    /// <summary>A torch.save-shaped .bin: each tensor an f32 view of its own deflated storage.</summary>
    public static void WriteTorchBin(string path, IReadOnlyList<(TorchZipWriter.TensorRef Tensor, byte[] Deflated)> tensors, byte[]? pickle = null)
    {
        var entries = new List<Entry>
        {
            new("archive/data.pkl", pickle ?? TorchZipWriter.Pickle(tensors.Select(t => t.Tensor)), 0, false),
        };
        entries[0] = entries[0] with { Size = entries[0].Data.Length };
        foreach (var (t, deflated) in tensors)
            entries.Add(new Entry("archive/data/" + t.StorageId, deflated, t.Elements * 4, true));
        Write(path, entries);
    }
}

/// <summary>Resident memory of this process, from /proc/self/status (Linux).</summary>
internal static class ResidentMemory
{
    public static long AnonymousMiB()
    {
        foreach (var line in File.ReadAllLines("/proc/self/status"))
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
                return long.Parse(line[8..].Trim()[..^3].Trim(), System.Globalization.CultureInfo.InvariantCulture) / 1024;
        return 0;
    }
}
