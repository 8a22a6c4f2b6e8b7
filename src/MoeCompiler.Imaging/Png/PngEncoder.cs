using System.Buffers.Binary;
using System.IO.Compression;

namespace MoeCompiler.Imaging;

/// <summary>Writes 8-bit RGB PNGs (filter chosen per row by the minimum-sum-of-absolute-differences heuristic).</summary>
public static class PngEncoder
{
    public static byte[] Encode(RgbImage image) => Encode(image, CompressionLevel.Optimal);

    public static byte[] Encode(RgbImage image, CompressionLevel level)
    {
        ArgumentNullException.ThrowIfNull(image);
        int w = image.Width, h = image.Height, rowBytes = w * 3;
        var output = new MemoryStream();
        output.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        Span<byte> ihdr = stackalloc byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)w);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr[4..], (uint)h);
        ihdr[8] = 8; // bit depth
        ihdr[9] = 2; // truecolour
        ihdr[10] = ihdr[11] = ihdr[12] = 0;
        WriteChunk(output, "IHDR"u8, ihdr);

        var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, level, leaveOpen: true))
        {
            var candidate = new byte[5][];
            for (int f = 0; f < 5; f++) candidate[f] = new byte[rowBytes + 1];
            var pixels = image.Pixels;
            for (int y = 0; y < h; y++)
            {
                var row = pixels.AsSpan(y * rowBytes, rowBytes);
                var prev = y > 0 ? pixels.AsSpan((y - 1) * rowBytes, rowBytes) : Span<byte>.Empty;
                int best = 0;
                long bestScore = long.MaxValue;
                for (int f = 0; f < 5; f++)
                {
                    var c = candidate[f];
                    c[0] = (byte)f;
                    long score = 0;
                    for (int i = 0; i < rowBytes; i++)
                    {
                        int a = i >= 3 ? row[i - 3] : 0, b = y > 0 ? prev[i] : 0, cc = i >= 3 && y > 0 ? prev[i - 3] : 0;
                        int predicted = f switch
                        {
                            0 => 0,
                            1 => a,
                            2 => b,
                            3 => (a + b) >> 1,
                            _ => Paeth(a, b, cc),
                        };
                        byte v = (byte)(row[i] - predicted);
                        c[i + 1] = v;
                        score += v < 128 ? v : 256 - v;
                    }
                    if (score < bestScore) { bestScore = score; best = f; }
                }
                z.Write(candidate[best]);
            }
        }
        WriteChunk(output, "IDAT"u8, compressed.GetBuffer().AsSpan(0, (int)compressed.Length));
        WriteChunk(output, "IEND"u8, ReadOnlySpan<byte>.Empty);
        return output.ToArray();
    }

    /// <summary>Encodes and writes to <paramref name="path"/>; refuses to replace an existing file unless asked.</summary>
    public static void Write(string path, RgbImage image, bool overwrite = false)
    {
        var bytes = Encode(image);
        using var file = new FileStream(path, overwrite ? FileMode.Create : FileMode.CreateNew, FileAccess.Write);
        file.Write(bytes);
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    private static void WriteChunk(Stream s, ReadOnlySpan<byte> type, ReadOnlySpan<byte> body)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(word, (uint)body.Length);
        s.Write(word);
        s.Write(type);
        s.Write(body);
        BinaryPrimitives.WriteUInt32BigEndian(word, Crc32.Update(Crc32.Compute(type), body));
        s.Write(word);
    }
}
