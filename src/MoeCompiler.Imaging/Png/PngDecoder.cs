using System.Buffers.Binary;
using System.IO.Compression;

namespace MoeCompiler.Imaging.Png;

/// <summary>
/// PNG decoder: all colour types and bit depths, PLTE, Adam7 interlace, CRC-checked chunks. The zlib stream is
/// inflated only up to the exact size the header implies, so a decompression bomb costs no more than the image.
/// </summary>
internal static class PngDecoder
{
    public static ReadOnlySpan<byte> Signature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    private enum ColorType { Gray = 0, Rgb = 2, Palette = 3, GrayAlpha = 4, Rgba = 6 }

    private sealed class Header
    {
        public int Width, Height, BitDepth, Channels;
        public ColorType Color;
        public bool Interlaced;
        public int BitsPerPixel => BitDepth * Channels;
        public int BytesPerPixelForFilter => Math.Max(1, BitsPerPixel / 8);
        public long RowBytes(int width) => ((long)width * BitsPerPixel + 7) / 8;
    }

    public static RgbImage Decode(ReadOnlySpan<byte> data, ImageDecodeOptions options)
    {
        int pos = 8;
        Header? header = null;
        byte[]? palette = null;
        var idat = new MemoryStream();
        bool sawEnd = false, idatDone = false, inIdat = false;
        while (!sawEnd)
        {
            if (pos + 8 > data.Length)
                throw new ImageDecodingException("PNG is truncated (chunk header past the end of the data)");
            uint length = BinaryPrimitives.ReadUInt32BigEndian(data[pos..]);
            var type = data.Slice(pos + 4, 4);
            string typeName = ChunkName(type);
            if (length > int.MaxValue || pos + 12L + length > data.Length)
                throw new ImageDecodingException($"PNG is truncated or corrupt (chunk {typeName} declares {length} bytes, the file has {data.Length - pos - 12})");
            var body = data.Slice(pos + 8, (int)length);
            uint storedCrc = BinaryPrimitives.ReadUInt32BigEndian(data[(pos + 8 + (int)length)..]);
            uint crc = Crc32.Update(Crc32.Compute(type), body);
            if (crc != storedCrc)
                throw new ImageDecodingException($"PNG chunk {typeName} at byte {pos} fails its CRC check (stored {storedCrc:X8}, computed {crc:X8})");
            pos += 12 + (int)length;

            bool isIdat = typeName == "IDAT";
            if (inIdat && !isIdat) idatDone = true;
            inIdat = isIdat;
            switch (typeName)
            {
                case "IHDR":
                    if (header is not null) throw new ImageDecodingException("PNG has more than one IHDR chunk");
                    header = ParseHeader(body, options);
                    break;
                case "PLTE":
                    if (length % 3 != 0 || length == 0 || length > 768)
                        throw new ImageDecodingException($"PNG PLTE chunk has invalid length {length}");
                    palette = body.ToArray();
                    break;
                case "IDAT":
                    if (header is null) throw new ImageDecodingException("PNG IDAT chunk before IHDR");
                    if (idatDone) throw new ImageDecodingException("PNG IDAT chunks are not consecutive");
                    idat.Write(body);
                    break;
                case "IEND":
                    sawEnd = true;
                    break;
                default:
                    if (header is null) throw new ImageDecodingException($"PNG does not start with IHDR (found {typeName})");
                    if ((type[0] & 0x20) == 0)
                        throw new ImageDecodingException($"PNG has an unknown critical chunk {typeName}");
                    break;
            }
        }
        if (header is null) throw new ImageDecodingException("PNG has no IHDR chunk");
        if (idat.Length == 0) throw new ImageDecodingException("PNG has no image data (no IDAT chunk)");
        if (header.Color == ColorType.Palette && palette is null)
            throw new ImageDecodingException("palette PNG has no PLTE chunk");

        CheckZlibHeader(idat.GetBuffer().AsSpan(0, (int)idat.Length));
        idat.Position = 0;
        using var z = new ZLibStream(idat, CompressionMode.Decompress);
        return header.Interlaced ? DecodeInterlaced(Inflate(z, header), header, palette) : DecodeSequential(z, header, palette);
    }

    /// <summary>RFC 1950 header: deflate (method 8), a window of at most 32 KiB, a valid check value and no preset
    /// dictionary, which the PNG specification forbids.</summary>
    private static void CheckZlibHeader(ReadOnlySpan<byte> zlib)
    {
        if (zlib.Length < 2) throw new ImageDecodingException("PNG image data is too short for a zlib stream");
        byte cmf = zlib[0], flg = zlib[1];
        if ((cmf & 0x0F) != 8 || (cmf >> 4) > 7)
            throw new ImageDecodingException($"PNG image data is not a deflate zlib stream (header 0x{cmf:X2}{flg:X2})");
        if ((cmf * 256 + flg) % 31 != 0)
            throw new ImageDecodingException($"PNG zlib header 0x{cmf:X2}{flg:X2} fails its check value");
        if ((flg & 0x20) != 0)
            throw new ImageDecodingException("PNG zlib stream asks for a preset dictionary, which PNG does not allow");
    }

    private static string ChunkName(ReadOnlySpan<byte> type)
    {
        Span<char> chars = stackalloc char[4];
        for (int i = 0; i < 4; i++) chars[i] = type[i] is >= 32 and < 127 ? (char)type[i] : '?';
        return new string(chars);
    }

    private static Header ParseHeader(ReadOnlySpan<byte> body, ImageDecodeOptions options)
    {
        if (body.Length != 13) throw new ImageDecodingException($"PNG IHDR has length {body.Length}, expected 13");
        uint width = BinaryPrimitives.ReadUInt32BigEndian(body);
        uint height = BinaryPrimitives.ReadUInt32BigEndian(body[4..]);
        ImageDecoder.CheckDimensions(width, height, options, "PNG");
        int depth = body[8];
        var color = (ColorType)body[9];
        int channels = color switch
        {
            ColorType.Gray => 1,
            ColorType.Rgb => 3,
            ColorType.Palette => 1,
            ColorType.GrayAlpha => 2,
            ColorType.Rgba => 4,
            _ => throw new ImageDecodingException($"PNG has invalid colour type {body[9]}"),
        };
        bool depthOk = color switch
        {
            ColorType.Gray => depth is 1 or 2 or 4 or 8 or 16,
            ColorType.Palette => depth is 1 or 2 or 4 or 8,
            _ => depth is 8 or 16,
        };
        if (!depthOk) throw new ImageDecodingException($"PNG colour type {body[9]} cannot have bit depth {depth}");
        if (body[10] != 0 || body[11] != 0) throw new ImageDecodingException("PNG uses an unknown compression or filter method");
        if (body[12] > 1) throw new ImageDecodingException($"PNG has unknown interlace method {body[12]}");
        return new Header { Width = (int)width, Height = (int)height, BitDepth = depth, Color = color, Channels = channels, Interlaced = body[12] == 1 };
    }

    private static long ExpectedRawSize(Header h)
    {
        if (!h.Interlaced) return (h.RowBytes(h.Width) + 1) * h.Height;
        long total = 0;
        foreach (var pass in Adam7Passes)
        {
            int w = PassSize(h.Width, pass.X0, pass.Dx), hh = PassSize(h.Height, pass.Y0, pass.Dy);
            if (w > 0 && hh > 0) total += (h.RowBytes(w) + 1) * hh;
        }
        return total;
    }

    private static byte[] Inflate(ZLibStream z, Header h)
    {
        long expected = ExpectedRawSize(h);
        if (expected > Array.MaxLength) throw new ImageDecodingException("PNG image data is too large for one buffer");
        var raw = new byte[expected];
        ReadExactly(z, raw, 0, raw.Length, expected);
        return raw;
    }

    private static void ReadExactly(ZLibStream z, byte[] buffer, int offset, int count, long expectedTotal)
    {
        int filled = 0;
        while (filled < count)
        {
            int n = z.Read(buffer, offset + filled, count - filled);
            if (n == 0)
                throw new ImageDecodingException($"PNG image data is truncated (the decompressed data is shorter than the {expectedTotal} bytes the header implies)");
            filled += n;
        }
    }

    private static void Unfilter(byte[] raw, int offset, int rows, int rowBytes, int bpp)
    {
        int stride = rowBytes + 1;
        for (int y = 0; y < rows; y++)
        {
            int rowStart = offset + y * stride;
            UnfilterRow(raw.AsSpan(rowStart, stride), y > 0 ? raw.AsSpan(rowStart - stride + 1, rowBytes) : Span<byte>.Empty, bpp, y);
        }
    }

    /// <summary>Reverses one row's filter in place. <paramref name="filtered"/>: filter byte then data; <paramref name="prev"/>:
    /// the previous row's unfiltered data (empty for a pass's first row).</summary>
    private static void UnfilterRow(Span<byte> filtered, ReadOnlySpan<byte> prev, int bpp, int y)
    {
        int filter = filtered[0];
        var row = filtered[1..];
        int rowBytes = row.Length;
        bool hasPrev = !prev.IsEmpty;
        switch (filter)
        {
            case 0: break;
            case 1:
                for (int i = bpp; i < rowBytes; i++) row[i] += row[i - bpp];
                break;
            case 2:
                if (hasPrev) for (int i = 0; i < rowBytes; i++) row[i] += prev[i];
                break;
            case 3:
                for (int i = 0; i < rowBytes; i++)
                {
                    int left = i >= bpp ? row[i - bpp] : 0, up = hasPrev ? prev[i] : 0;
                    row[i] += (byte)((left + up) >> 1);
                }
                break;
            case 4:
                for (int i = 0; i < rowBytes; i++)
                {
                    int a = i >= bpp ? row[i - bpp] : 0, b = hasPrev ? prev[i] : 0, c = i >= bpp && hasPrev ? prev[i - bpp] : 0;
                    int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
                    row[i] += (byte)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
                }
                break;
            default:
                throw new ImageDecodingException($"PNG row {y} has unknown filter type {filter}");
        }
    }

    /// <summary>Non-interlaced: inflate, unfilter and convert one row at a time (memory: the output plus two rows).</summary>
    private static RgbImage DecodeSequential(ZLibStream z, Header h, byte[]? palette)
    {
        int rowBytes = (int)h.RowBytes(h.Width), stride = rowBytes + 1;
        long expected = (long)stride * h.Height;
        var current = new byte[stride];
        var previous = new byte[stride];
        var pixels = new byte[h.Width * h.Height * 3];
        for (int y = 0; y < h.Height; y++)
        {
            ReadExactly(z, current, 0, stride, expected);
            UnfilterRow(current, y > 0 ? previous.AsSpan(1) : Span<byte>.Empty, h.BytesPerPixelForFilter, y);
            ConvertRow(current.AsSpan(1), h, palette, h.Width, pixels, y * h.Width * 3, 3);
            (current, previous) = (previous, current);
        }
        return new RgbImage(h.Width, h.Height, pixels);
    }

    private readonly record struct Pass(int X0, int Y0, int Dx, int Dy);

    private static readonly Pass[] Adam7Passes =
    [
        new(0, 0, 8, 8), new(4, 0, 8, 8), new(0, 4, 4, 8), new(2, 0, 4, 4),
        new(0, 2, 2, 4), new(1, 0, 2, 2), new(0, 1, 1, 2),
    ];

    private static int PassSize(int size, int start, int step) => size > start ? (size - start + step - 1) / step : 0;

    private static RgbImage DecodeInterlaced(byte[] raw, Header h, byte[]? palette)
    {
        var pixels = new byte[h.Width * h.Height * 3];
        int offset = 0;
        foreach (var pass in Adam7Passes)
        {
            int w = PassSize(h.Width, pass.X0, pass.Dx), ph = PassSize(h.Height, pass.Y0, pass.Dy);
            if (w == 0 || ph == 0) continue;
            int rowBytes = (int)h.RowBytes(w);
            Unfilter(raw, offset, ph, rowBytes, h.BytesPerPixelForFilter);
            for (int py = 0; py < ph; py++)
            {
                int y = pass.Y0 + py * pass.Dy;
                ConvertRow(raw.AsSpan(offset + py * (rowBytes + 1) + 1, rowBytes), h, palette, w, pixels,
                    (y * h.Width + pass.X0) * 3, pass.Dx * 3);
            }
            offset += (rowBytes + 1) * ph;
        }
        return new RgbImage(h.Width, h.Height, pixels);
    }

    /// <summary>One unfiltered row to RGB, as Pillow's PNG modes convert to RGB (see the class summary).</summary>
    private static void ConvertRow(ReadOnlySpan<byte> row, Header h, byte[]? palette, int width, byte[] dst, int dstOffset, int dstStep)
    {
        int d = dstOffset;
        switch (h.Color)
        {
            case ColorType.Gray when h.BitDepth == 16:
                // Pillow opens 16-bit grey as mode "I"; convert("RGB") clips each value to 0..255.
                for (int x = 0; x < width; x++, d += dstStep)
                    Put(dst, d, (byte)Math.Min(255, (row[2 * x] << 8) | row[2 * x + 1]));
                break;
            case ColorType.Gray when h.BitDepth == 8:
                for (int x = 0; x < width; x++, d += dstStep) Put(dst, d, row[x]);
                break;
            case ColorType.Gray:
            {
                int depth = h.BitDepth, max = (1 << depth) - 1, scale = 255 / max;
                for (int x = 0; x < width; x++, d += dstStep)
                    Put(dst, d, (byte)(SubByteSample(row, x, depth) * scale));
                break;
            }
            case ColorType.GrayAlpha:
            {
                int step = h.BitDepth == 16 ? 4 : 2;
                for (int x = 0; x < width; x++, d += dstStep) Put(dst, d, row[x * step]);
                break;
            }
            case ColorType.Rgb or ColorType.Rgba:
            {
                int bytesPerSample = h.BitDepth / 8, step = h.Channels * bytesPerSample;
                for (int x = 0; x < width; x++, d += dstStep)
                {
                    int s = x * step;
                    dst[d] = row[s];
                    dst[d + 1] = row[s + bytesPerSample];
                    dst[d + 2] = row[s + 2 * bytesPerSample];
                }
                break;
            }
            case ColorType.Palette:
            {
                int entries = palette!.Length / 3;
                for (int x = 0; x < width; x++, d += dstStep)
                {
                    int index = h.BitDepth == 8 ? row[x] : SubByteSample(row, x, h.BitDepth);
                    if (index < entries)
                    {
                        dst[d] = palette[3 * index];
                        dst[d + 1] = palette[3 * index + 1];
                        dst[d + 2] = palette[3 * index + 2];
                    }
                    else
                    {
                        dst[d] = dst[d + 1] = dst[d + 2] = 0;
                    }
                }
                break;
            }
        }
    }

    private static int SubByteSample(ReadOnlySpan<byte> row, int x, int depth)
    {
        int bit = x * depth;
        return (row[bit >> 3] >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
    }

    private static void Put(byte[] dst, int d, byte v) => dst[d] = dst[d + 1] = dst[d + 2] = v;
}
