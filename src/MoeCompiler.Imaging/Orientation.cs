using System.Buffers.Binary;

namespace MoeCompiler.Imaging;

/// <summary>EXIF orientation (tag 0x0112 in IFD0) and the transposes Pillow's <c>ImageOps.exif_transpose</c> applies.</summary>
internal static class Orientation
{
    /// <summary>Reads the orientation from an APP1 segment body; 1 (normal) when absent or unreadable.</summary>
    public static int ReadExif(ReadOnlySpan<byte> app1)
    {
        if (app1.Length < 14 || !app1[..6].SequenceEqual("Exif\0\0"u8)) return 1;
        byte[] tiff = app1[6..].ToArray();
        bool little;
        if (tiff[0] == 'I' && tiff[1] == 'I') little = true;
        else if (tiff[0] == 'M' && tiff[1] == 'M') little = false;
        else return 1;
        uint U32(int at) => little ? BinaryPrimitives.ReadUInt32LittleEndian(tiff.AsSpan(at)) : BinaryPrimitives.ReadUInt32BigEndian(tiff.AsSpan(at));
        ushort U16(int at) => little ? BinaryPrimitives.ReadUInt16LittleEndian(tiff.AsSpan(at)) : BinaryPrimitives.ReadUInt16BigEndian(tiff.AsSpan(at));
        if (U16(2) != 42) return 1;
        uint ifd = U32(4);
        if (ifd > (uint)tiff.Length - 2) return 1;
        int entries = U16((int)ifd);
        for (int i = 0; i < entries; i++)
        {
            long at = ifd + 2 + 12L * i;
            if (at + 12 > tiff.Length) return 1;
            if (U16((int)at) == 0x0112)
            {
                int value = U16((int)at + 8);
                return value is >= 1 and <= 8 ? value : 1;
            }
        }
        return 1;
    }

    /// <summary>Applies an EXIF orientation so the picture is upright (2 mirror, 3 rotate 180, 4 flip, 5 transpose,
    /// 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise).</summary>
    public static RgbImage Apply(RgbImage image, int orientation)
    {
        if (orientation is < 2 or > 8) return image;
        int w = image.Width, h = image.Height;
        bool swap = orientation >= 5;
        int ow = swap ? h : w, oh = swap ? w : h;
        var src = image.Pixels;
        var dst = new byte[src.Length];
        for (int y = 0; y < oh; y++)
        {
            for (int x = 0; x < ow; x++)
            {
                // (sx, sy): the source pixel that lands at output (x, y).
                (int sx, int sy) = orientation switch
                {
                    2 => (w - 1 - x, y),
                    3 => (w - 1 - x, h - 1 - y),
                    4 => (x, h - 1 - y),
                    5 => (y, x),
                    6 => (y, h - 1 - x),
                    7 => (w - 1 - y, h - 1 - x),
                    _ => (w - 1 - y, x),
                };
                int s = (sy * w + sx) * 3, d = (y * ow + x) * 3;
                dst[d] = src[s];
                dst[d + 1] = src[s + 1];
                dst[d + 2] = src[s + 2];
            }
        }
        return new RgbImage(ow, oh, dst);
    }
}
