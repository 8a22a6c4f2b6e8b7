using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;

namespace MoeCompiler.Imaging.Tests;

public class RobustnessTests
{
    private static readonly string[] Samples =
    [
        "images/jpeg_420_37x29.jpg", "images/jpeg_prog_420_61x47.jpg", "images/jpeg_restart_blocks_prog.jpg",
        "images/jpeg_prog_444_61x47.jpg", "images/jpeg_cmyk.jpg", "images/jpeg_gray.jpg", "images/jpeg_exif_6.jpg",
        "images/png_rgb16_adam7.png", "images/png_palette4.png", "images/png_gray2_adam7.png", "images/png_rgba8.png",
        "images/bmp_8.bmp", "images/bmp_32_bitfields.bmp", "images/bmp_1.bmp",
        "images/ppm_p3_plain.ppm", "images/pgm_p5_16bit.pgm", "images/ppm_p6.ppm",
        "images/jpeg_sequential_multiscan.jpg", "images/jpeg_ycck.jpg", "images/jpeg_440_37x29.jpg",
    ];

    public static IEnumerable<object[]> SampleFiles => Samples.Select(s => new object[] { s });

    [Theory]
    [MemberData(nameof(SampleFiles))]
    public void Truncated_files_give_a_decoding_error(string file)
    {
        var data = Goldens.Bytes(file);
        ImageDecoder.Decode(data); // the whole file decodes
        var cuts = new SortedSet<int> { 1, 2, 3, 8, 20, data.Length / 3, data.Length / 2, data.Length - 2, data.Length - 1 };
        for (int i = 1; i < 40; i++) cuts.Add((int)((long)data.Length * i / 40));
        // A plain (ASCII) PNM cut inside or after its last number is still a well-formed file.
        int limit = file.EndsWith("plain.ppm", StringComparison.Ordinal) ? data.Length - 8 : data.Length;
        foreach (int cut in cuts.Where(c => c > 0 && c < limit))
        {
            var e = Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode(data.AsSpan(0, cut)));
            Assert.False(string.IsNullOrWhiteSpace(e.Message));
        }
    }

    [Fact]
    public void Error_names_the_file()
    {
        var path = Path.Combine(Path.GetTempPath(), $"moe-bad-{Guid.NewGuid():N}.jpg");
        File.WriteAllBytes(path, [0xFF, 0xD8, 0xFF, 0xDB, 0x00]);
        try
        {
            var e = Assert.Throws<ImageDecodingException>(() => ImageDecoder.DecodeFile(path));
            Assert.Equal(path, e.FileName);
            Assert.Contains(path, e.Message);
            Assert.Contains("JPEG", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Missing_file_and_unknown_format_are_decoding_errors()
    {
        Assert.Throws<ImageDecodingException>(() => ImageDecoder.DecodeFile("/nonexistent/picture.png"));
        var e = Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode("GIF89a........"u8));
        Assert.Contains("unrecognised", e.Message);
        Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode(ReadOnlySpan<byte>.Empty));
    }

    private static byte[] Png(uint width, uint height, byte depth, byte colorType, byte[] zlibData)
    {
        var s = new MemoryStream();
        s.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = depth;
        ihdr[9] = colorType;
        Chunk(s, "IHDR", ihdr);
        Chunk(s, "IDAT", zlibData);
        Chunk(s, "IEND", []);
        return s.ToArray();
    }

    private static void Chunk(Stream s, string type, byte[] body)
    {
        var head = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(head, (uint)body.Length);
        System.Text.Encoding.ASCII.GetBytes(type, head.AsSpan(4));
        s.Write(head);
        s.Write(body);
        var crcInput = head.AsSpan(4).ToArray().Concat(body).ToArray();
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32.Compute(crcInput));
        s.Write(crc);
    }

    private static byte[] Zlib(byte[] raw)
    {
        var m = new MemoryStream();
        using (var z = new ZLibStream(m, CompressionLevel.SmallestSize, leaveOpen: true)) z.Write(raw);
        return m.ToArray();
    }

    [Fact]
    public void Huge_declared_dimensions_are_refused_before_allocation()
    {
        var png = Png(100_000, 100_000, 8, 2, Zlib(new byte[10]));
        var e = Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode(png));
        Assert.Contains("limit", e.Message);

        // JPEG SOF0 declaring 65535x65535 (4.3 gigapixels).
        byte[] jpeg = [0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xD9];
        e = Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode(jpeg));
        Assert.Contains("limit", e.Message);

        byte[] ppm = "P6 2000000000 2000000000 255\n"u8.ToArray();
        Assert.Contains("limit", Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode(ppm)).Message);
    }

    [Fact]
    public void Jpeg_declaring_a_large_size_with_little_data_fails_fast()
    {
        // 8000x8000 (within the default limit) but only the entropy data of a 37x29 picture: the decoder must stop
        // at the first MCU row whose data is missing, not decode 64 megapixels of zeros.
        var data = Goldens.Bytes("images/jpeg_420_37x29.jpg");
        int sof = Enumerable.Range(0, data.Length - 1).First(i => data[i] == 0xFF && data[i + 1] == 0xC0);
        var hostile = (byte[])data.Clone();
        hostile[sof + 5] = 0x1F; hostile[sof + 6] = 0x40; // height 8000
        hostile[sof + 7] = 0x1F; hostile[sof + 8] = 0x40; // width 8000
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode(hostile));
        Assert.Contains("ends early", e.Message);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), "hang guard");
    }

    [Fact]
    public void Png_declaring_a_large_size_with_little_data_fails_without_a_raw_buffer()
    {
        // 8000x8000 RGBA 16-bit = 512 MB of raw rows; the data holds one row. Rows are inflated one at a time.
        var png = Png(8000, 8000, 16, 6, Zlib(new byte[8000 * 8 + 1]));
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode(png));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Contains("truncated", e.Message);
        Assert.True(allocated < 8000L * 8000 * 3 + (16 << 20), $"allocated {allocated} bytes");
    }

    [Fact]
    public void Maximum_pixel_count_is_configurable()
    {
        var data = Goldens.Bytes("images/jpeg_420_37x29.jpg");
        var strict = new ImageDecodeOptions { MaxPixels = 37 * 29 - 1 };
        Assert.Contains("MaxPixels", Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode(data, strict)).Message);
        Assert.Equal(37, ImageDecoder.Decode(data, strict with { MaxPixels = 37 * 29 }).Width);
    }

    [Fact]
    public void Decompression_bomb_is_inflated_only_as_far_as_the_image_needs()
    {
        // 64 MB of zeros behind a 100x100 grey header: only 100*(100+1) bytes may be inflated.
        var bomb = Png(100, 100, 8, 0, Zlib(new byte[64 << 20]));
        Assert.True(bomb.Length < 200_000);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var image = ImageDecoder.Decode(bomb);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(100, image.Width);
        Assert.True(allocated < 8 << 20, $"decoding allocated {allocated} bytes");
    }

    [Fact]
    public void Png_crc_mismatch_and_bad_filter_are_reported()
    {
        var data = Goldens.Bytes("images/png_rgb8.png");
        var corrupt = (byte[])data.Clone();
        corrupt[20] ^= 0x40; // inside IHDR
        Assert.Contains("CRC", Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode(corrupt)).Message);

        var raw = new byte[2 * (2 * 3 + 1)];
        raw[0] = 9; // filter type 9 does not exist
        var png = Png(2, 2, 8, 2, Zlib(raw));
        Assert.Contains("filter", Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode(png)).Message);
    }

    [Fact]
    public void Bad_huffman_tables_are_reported()
    {
        var data = Goldens.Bytes("images/jpeg_420_37x29.jpg");
        int dht = IndexOfMarker(data, 0xC4);
        var corrupt = (byte[])data.Clone();
        // Three 1-bit codes cannot exist; keep the symbol count unchanged so only the code lengths are wrong.
        int donor = Enumerable.Range(dht + 6, 15).First(i => corrupt[i] >= 3);
        corrupt[donor] -= 3;
        corrupt[dht + 5] += 3;
        Assert.Contains("Huffman", Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode(corrupt)).Message);
    }

    [Fact]
    public void Scan_without_huffman_table_is_reported()
    {
        var data = Goldens.Bytes("images/jpeg_420_37x29.jpg");
        int dht = IndexOfMarker(data, 0xC4);
        var corrupt = (byte[])data.Clone();
        corrupt[dht + 1] = 0xC8; // JPG extension marker: the tables are skipped, so the scan's tables are missing
        Assert.Throws<ImageDecodingException>(() => ImageDecoder.Decode(corrupt));
    }

    private static int IndexOfMarker(byte[] data, byte marker)
    {
        for (int i = 0; i + 1 < data.Length; i++)
            if (data[i] == 0xFF && data[i + 1] == marker) return i;
        throw new InvalidOperationException("marker not found");
    }

    /// <summary>
    /// Seeded mutation fuzzing over the committed images: byte flips, overwrites with special values, insertions,
    /// deletions and cuts. Every outcome must be a picture or an ImageDecodingException, within a hang guard.
    /// MOE_SLOW_TESTS=1 mutates every committed image 1000 times.
    /// </summary>
    [Fact]
    public void Mutated_files_decode_or_fail_cleanly()
    {
        bool slow = Environment.GetEnvironmentVariable("MOE_SLOW_TESTS") == "1";
        int perFile = slow ? 1000 : 150;
        var files = slow
            ? Directory.GetFiles(Goldens.PathOf("images")).Order(StringComparer.Ordinal).Select(f => "images/" + Path.GetFileName(f)).ToArray()
            : Samples;
        var random = new Random(7);
        var options = new ImageDecodeOptions { MaxPixels = 4 << 20 };
        int decoded = 0, rejected = 0;
        foreach (var file in files)
        {
            var original = Goldens.Bytes(file);
            for (int i = 0; i < perFile; i++)
            {
                var mutated = Mutate(original, random);
                var watch = Stopwatch.StartNew();
                try
                {
                    ImageDecoder.Decode(mutated, options);
                    decoded++;
                }
                catch (ImageDecodingException)
                {
                    rejected++;
                }
                catch (Exception e)
                {
                    var path = Path.Combine(Path.GetTempPath(), $"moe-fuzz-{Path.GetFileName(file)}-{i}.bin");
                    File.WriteAllBytes(path, mutated);
                    Assert.Fail($"{file} mutation {i} threw {e.GetType().Name}: {e.Message} (input saved to {path})\n{e.StackTrace}");
                }
                // A hang guard, not a performance assertion: these inputs are a few kilobytes.
                Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"{file} mutation {i} took {watch.Elapsed}");
            }
        }
        Assert.True(decoded > 0 && rejected > 0, $"decoded {decoded}, rejected {rejected}");
    }

    private static byte[] Mutate(byte[] original, Random random)
    {
        var data = new List<byte>(original);
        int edits = 1 + random.Next(4);
        for (int e = 0; e < edits && data.Count > 1; e++)
        {
            int at = random.Next(data.Count);
            switch (random.Next(6))
            {
                case 0: data[at] ^= (byte)(1 << random.Next(8)); break;
                case 1: data[at] = (byte)random.Next(256); break;
                case 2: data[at] = random.Next(3) switch { 0 => 0x00, 1 => 0xFF, _ => 0x7F }; break;
                case 3: data.Insert(at, (byte)random.Next(256)); break;
                case 4: data.RemoveRange(at, Math.Min(data.Count - at, 1 + random.Next(16))); break;
                default: data.RemoveRange(at, data.Count - at); break;
            }
        }
        return data.ToArray();
    }
}
