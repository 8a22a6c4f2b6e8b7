using System.Buffers.Binary;

namespace MoeCompiler.Imaging.Bmp;

/// <summary>
/// Windows BMP: uncompressed 1/4/8-bit palette, 24-bit BGR and 32-bit BGRX (alpha dropped as Pillow does),
/// 32-bit BI_BITFIELDS with byte-aligned masks, bottom-up or top-down.
/// </summary>
internal static class BmpDecoder
{
    public static RgbImage Decode(ReadOnlySpan<byte> data, ImageDecodeOptions options)
    {
        if (data.Length < 26) throw new ImageDecodingException("BMP is truncated (no complete header)");
        uint pixelOffset = BinaryPrimitives.ReadUInt32LittleEndian(data[10..]);
        uint headerSize = BinaryPrimitives.ReadUInt32LittleEndian(data[14..]);
        long width, height;
        int bits, compression = 0, colorsUsed = 0, paletteEntrySize;
        if (headerSize == 12)
        {
            width = BinaryPrimitives.ReadUInt16LittleEndian(data[18..]);
            height = BinaryPrimitives.ReadInt16LittleEndian(data[20..]);
            bits = BinaryPrimitives.ReadUInt16LittleEndian(data[24..]);
            paletteEntrySize = 3;
        }
        else if (headerSize is 40 or 52 or 56 or 64 or 108 or 124)
        {
            if (data.Length < 14 + 40) throw new ImageDecodingException("BMP is truncated (info header)");
            width = BinaryPrimitives.ReadInt32LittleEndian(data[18..]);
            height = BinaryPrimitives.ReadInt32LittleEndian(data[22..]);
            bits = BinaryPrimitives.ReadUInt16LittleEndian(data[28..]);
            compression = BinaryPrimitives.ReadInt32LittleEndian(data[30..]);
            colorsUsed = BinaryPrimitives.ReadInt32LittleEndian(data[46..]);
            paletteEntrySize = 4;
        }
        else
        {
            throw new ImageDecodingException($"BMP has an unsupported header size {headerSize}");
        }
        bool topDown = height < 0;
        height = Math.Abs(height);
        ImageDecoder.CheckDimensions(width, height, options, "BMP");
        int w = (int)width, h = (int)height;

        int redShift = 16, greenShift = 8, blueShift = 0;
        if (compression == 3 && bits == 32)
        {
            const int masksAt = 14 + 40; // right after BITMAPINFOHEADER, and inside V4/V5 headers at the same place
            if (data.Length < masksAt + 12) throw new ImageDecodingException("BMP is truncated (bit field masks)");
            redShift = MaskShift(BinaryPrimitives.ReadUInt32LittleEndian(data[masksAt..]));
            greenShift = MaskShift(BinaryPrimitives.ReadUInt32LittleEndian(data[(masksAt + 4)..]));
            blueShift = MaskShift(BinaryPrimitives.ReadUInt32LittleEndian(data[(masksAt + 8)..]));
        }
        else if (compression != 0)
        {
            throw new ImageDecodingException($"BMP compression {compression} is not supported (only uncompressed and 32-bit bit fields)");
        }
        if (bits is not (1 or 4 or 8 or 24 or 32))
            throw new ImageDecodingException($"BMP bit depth {bits} is not supported (1, 4, 8, 24, 32 are)");

        byte[]? palette = null;
        int paletteEntries = 0;
        if (bits <= 8)
        {
            paletteEntries = colorsUsed > 0 ? colorsUsed : 1 << bits;
            if (paletteEntries > 1 << bits && paletteEntries > 256)
                throw new ImageDecodingException($"BMP declares {colorsUsed} palette colours for {bits}-bit pixels");
            long paletteStart = 14 + headerSize;
            if (paletteStart + (long)paletteEntries * paletteEntrySize > data.Length)
                throw new ImageDecodingException("BMP is truncated (palette)");
            palette = new byte[paletteEntries * 3];
            for (int i = 0; i < paletteEntries; i++)
            {
                int p = (int)paletteStart + i * paletteEntrySize;
                palette[3 * i] = data[p + 2];
                palette[3 * i + 1] = data[p + 1];
                palette[3 * i + 2] = data[p];
            }
        }

        long stride = ((long)w * bits + 31) / 32 * 4;
        if (pixelOffset + stride * h > data.Length)
            throw new ImageDecodingException($"BMP is truncated (pixel data needs {stride * h} bytes from offset {pixelOffset}, the file has {data.Length})");
        var pixels = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
        {
            int srcY = topDown ? y : h - 1 - y;
            var row = data.Slice((int)(pixelOffset + srcY * stride), (int)stride);
            int d = y * w * 3;
            for (int x = 0; x < w; x++, d += 3)
            {
                switch (bits)
                {
                    case 24:
                        pixels[d] = row[3 * x + 2]; pixels[d + 1] = row[3 * x + 1]; pixels[d + 2] = row[3 * x];
                        break;
                    case 32:
                        uint v = BinaryPrimitives.ReadUInt32LittleEndian(row[(4 * x)..]);
                        pixels[d] = (byte)(v >> redShift); pixels[d + 1] = (byte)(v >> greenShift); pixels[d + 2] = (byte)(v >> blueShift);
                        break;
                    default:
                        int bit = x * bits;
                        int index = (row[bit >> 3] >> (8 - bits - (bit & 7))) & ((1 << bits) - 1);
                        if (index < paletteEntries)
                        {
                            pixels[d] = palette![3 * index]; pixels[d + 1] = palette[3 * index + 1]; pixels[d + 2] = palette[3 * index + 2];
                        }
                        break;
                }
            }
        }
        return new RgbImage(w, h, pixels);
    }

    private static int MaskShift(uint mask) => mask switch
    {
        0xFFu => 0,
        0xFF00u => 8,
        0xFF0000u => 16,
        0xFF000000u => 24,
        _ => throw new ImageDecodingException($"BMP bit field mask {mask:X8} is not supported (byte-aligned 8-bit masks are)"),
    };
}
