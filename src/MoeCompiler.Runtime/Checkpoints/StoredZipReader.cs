using System.Buffers.Binary;
using System.Text;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>One member of a zip archive: where its bytes sit in the mapped file and how they are stored.</summary>
internal sealed record ZipEntry(string Name, long DataOffset, long CompressedSize, long Size, ushort Method)
{
    public const ushort Stored = 0;
    public const ushort Deflated = 8;
}

/// <summary>
/// Reads the central directory of a zip archive (zip64 included, as torch.save writes for files over 4 GB)
/// from a mapped file, checking every offset against the file size. Data is not copied: callers view stored
/// entries in place.
/// </summary>
internal static class StoredZipReader
{
    private const uint EndOfCentralDirectory = 0x06054b50;
    private const uint Zip64Locator = 0x07064b50;
    private const uint Zip64EndOfCentralDirectory = 0x06064b50;
    private const uint CentralDirectoryHeader = 0x02014b50;
    private const uint LocalFileHeader = 0x04034b50;
    private const int MaxEntries = 10_000_000;

    public static Dictionary<string, ZipEntry> ReadEntries(string path, MappedFileStorage file)
    {
        long length = file.ByteLength;
        long eocd = FindEndOfCentralDirectory(path, file);
        var record = file.Bytes(eocd, 22);
        long entryCount = BinaryPrimitives.ReadUInt16LittleEndian(record[10..]);
        long directorySize = BinaryPrimitives.ReadUInt32LittleEndian(record[12..]);
        long directoryOffset = BinaryPrimitives.ReadUInt32LittleEndian(record[16..]);
        if (entryCount == 0xFFFF || directorySize == 0xFFFFFFFF || directoryOffset == 0xFFFFFFFF)
        {
            if (eocd < 20) throw Bad(path, "zip64 end-of-directory locator is missing");
            var locator = file.Bytes(eocd - 20, 20);
            if (BinaryPrimitives.ReadUInt32LittleEndian(locator) != Zip64Locator)
                throw Bad(path, "zip64 end-of-directory locator is missing");
            long zip64 = CheckedOffset(path, BinaryPrimitives.ReadUInt64LittleEndian(locator[8..]), 56, length, "zip64 end record");
            var z = file.Bytes(zip64, 56);
            if (BinaryPrimitives.ReadUInt32LittleEndian(z) != Zip64EndOfCentralDirectory)
                throw Bad(path, "zip64 end-of-directory record has a bad signature");
            entryCount = CheckedLong(path, BinaryPrimitives.ReadUInt64LittleEndian(z[32..]), "entry count");
            directorySize = CheckedLong(path, BinaryPrimitives.ReadUInt64LittleEndian(z[40..]), "directory size");
            directoryOffset = CheckedLong(path, BinaryPrimitives.ReadUInt64LittleEndian(z[48..]), "directory offset");
        }
        if (entryCount > MaxEntries) throw Bad(path, $"zip claims {entryCount} entries");
        if (directoryOffset > length || directorySize > length - directoryOffset)
            throw Bad(path, $"zip central directory [{directoryOffset}, +{directorySize}) lies outside the {length}-byte file (truncated?)");

        var entries = new Dictionary<string, ZipEntry>(StringComparer.Ordinal);
        long position = directoryOffset, end = directoryOffset + directorySize;
        for (long i = 0; i < entryCount; i++)
        {
            if (end - position < 46) throw Bad(path, "zip central directory is truncated");
            var h = file.Bytes(position, 46);
            if (BinaryPrimitives.ReadUInt32LittleEndian(h) != CentralDirectoryHeader)
                throw Bad(path, $"zip central directory entry {i} has a bad signature");
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(h[8..]);
            ushort method = BinaryPrimitives.ReadUInt16LittleEndian(h[10..]);
            long compressed = BinaryPrimitives.ReadUInt32LittleEndian(h[20..]);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(h[24..]);
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(h[28..]);
            int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(h[30..]);
            int commentLength = BinaryPrimitives.ReadUInt16LittleEndian(h[32..]);
            long localOffset = BinaryPrimitives.ReadUInt32LittleEndian(h[42..]);
            if (end - position - 46 < (long)nameLength + extraLength + commentLength)
                throw Bad(path, "zip central directory is truncated");
            string name = Encoding.UTF8.GetString(file.Bytes(position + 46, nameLength));
            var extra = file.Bytes(position + 46 + nameLength, extraLength);
            ReadZip64Extra(path, name, extra, ref size, ref compressed, ref localOffset);
            position += 46 + nameLength + extraLength + commentLength;

            if ((flags & 1) != 0) throw Bad(path, $"zip entry '{name}' is encrypted");
            if (method != ZipEntry.Stored && method != ZipEntry.Deflated)
                throw Bad(path, $"zip entry '{name}' uses compression method {method} (only stored or deflated entries are read)");
            if (method == ZipEntry.Stored && compressed != size)
                throw Bad(path, $"stored zip entry '{name}' has compressed size {compressed} but size {size}");
            // deflate cannot expand more than about 1032:1; a larger claim would only make the reader allocate
            if (method == ZipEntry.Deflated && size > compressed * 1032 + 1024)
                throw Bad(path, $"deflated zip entry '{name}' claims {size} bytes from {compressed}: not a valid deflate stream");
            if (localOffset > length - 30) throw Bad(path, $"zip entry '{name}' starts outside the file");
            var local = file.Bytes(localOffset, 30);
            if (BinaryPrimitives.ReadUInt32LittleEndian(local) != LocalFileHeader)
                throw Bad(path, $"zip entry '{name}' has a bad local header signature");
            long dataOffset = localOffset + 30 + BinaryPrimitives.ReadUInt16LittleEndian(local[26..]) + BinaryPrimitives.ReadUInt16LittleEndian(local[28..]);
            if (dataOffset > length || compressed > length - dataOffset)
                throw Bad(path, $"zip entry '{name}' ({compressed} bytes at {dataOffset}) runs past the end of the {length}-byte file (truncated?)");
            if (!entries.TryAdd(name, new ZipEntry(name, dataOffset, compressed, size, method)))
                throw Bad(path, $"zip has two entries named '{name}'");
        }
        return entries;
    }

    private static void ReadZip64Extra(string path, string name, ReadOnlySpan<byte> extra, ref long size, ref long compressed, ref long localOffset)
    {
        while (extra.Length >= 4)
        {
            ushort id = BinaryPrimitives.ReadUInt16LittleEndian(extra);
            int blockLength = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
            if (blockLength > extra.Length - 4) throw Bad(path, $"zip entry '{name}' has a truncated extra field");
            var block = extra.Slice(4, blockLength);
            if (id == 0x0001)
            {
                int at = 0;
                if (size == 0xFFFFFFFF) size = NextZip64(path, name, block, ref at);
                if (compressed == 0xFFFFFFFF) compressed = NextZip64(path, name, block, ref at);
                if (localOffset == 0xFFFFFFFF) localOffset = NextZip64(path, name, block, ref at);
            }
            extra = extra[(4 + blockLength)..];
        }
    }

    private static long NextZip64(string path, string name, ReadOnlySpan<byte> block, ref int at)
    {
        if (block.Length - at < 8) throw Bad(path, $"zip entry '{name}' has a short zip64 extra field");
        long v = CheckedLong(path, BinaryPrimitives.ReadUInt64LittleEndian(block[at..]), "zip64 field");
        at += 8;
        return v;
    }

    private static long FindEndOfCentralDirectory(string path, MappedFileStorage file)
    {
        long length = file.ByteLength;
        if (length < 22) throw Bad(path, $"file is {length} bytes, too short for a zip archive");
        long lowest = Math.Max(0, length - 22 - 0xFFFF);
        for (long at = length - 22; at >= lowest; at--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(file.Bytes(at, 4)) == EndOfCentralDirectory
                && at + 22 + BinaryPrimitives.ReadUInt16LittleEndian(file.Bytes(at + 20, 2)) == length)
                return at;
        }
        throw Bad(path, "no zip end-of-central-directory record (truncated or not a zip archive)");
    }

    private static long CheckedLong(string path, ulong value, string what) =>
        value > long.MaxValue ? throw Bad(path, $"zip {what} {value} is out of range") : (long)value;

    private static long CheckedOffset(string path, ulong value, int recordLength, long length, string what) =>
        length < recordLength || value > (ulong)(length - recordLength) ? throw Bad(path, $"zip {what} offset {value} lies outside the file") : (long)value;

    private static CheckpointException Bad(string path, string problem) => new(path, problem);
}
