using MoeCompiler.Imaging.Png;

namespace MoeCompiler.Imaging.Tests;

/// <summary>Regression tests for issue 17 (hostile images), each building its hostile file here.</summary>
public sealed class HostileInputTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "moe-img-hostile-" + Guid.NewGuid().ToString("N"));

    public HostileInputTests() => Directory.CreateDirectory(_folder);

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    private static byte[] SmallPng()
    {
        var image = new RgbImage(2, 2, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        return PngEncoder.Encode(image);
    }

    [Fact]
    public void A_png_whose_zlib_header_asks_for_a_preset_dictionary_is_a_decoding_error()
    {
        var png = SmallPng();
        int idat = png.AsSpan().IndexOf("IDAT"u8) + 4;
        // set FDICT and fix the header's check value, so that only the dictionary bit is wrong; then fix the chunk CRC
        png[idat + 1] = (byte)(png[idat + 1] | 0x20);
        png[idat + 1] = (byte)((png[idat + 1] & 0xE0) | (31 - (png[idat] * 256 + (png[idat + 1] & 0xE0)) % 31) % 31);
        int length = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(idat - 8));
        uint crc = Crc32.Compute(png.AsSpan(idat - 4, length + 4));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(idat + length), crc);
        string path = Path.Combine(_folder, "dictionary.png");
        File.WriteAllBytes(path, png);

        var e = Assert.Throws<ImageDecodingException>(() => ImageDecoder.DecodeFile(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("preset dictionary", e.Message);
    }

    [Fact]
    public void The_unchanged_png_decodes()
    {
        // the control for the test above
        var image = ImageDecoder.Decode(SmallPng());
        Assert.Equal(2, image.Width);
    }

    [Fact]
    public void Dev_zero_and_a_link_to_it_are_refused_without_reading_them()
    {
        string link = Path.Combine(_folder, "photo.png");
        File.CreateSymbolicLink(link, "/dev/zero");
        foreach (string path in new[] { "/dev/zero", link })
        {
            var e = Assert.Throws<ImageDecodingException>(() => ImageDecoder.DecodeFile(path));
            Assert.Contains(path, e.Message);
            Assert.Contains("not a regular file", e.Message);
        }
    }

    [Fact]
    public async Task A_fifo_is_refused_without_opening_it()
    {
        string fifo = Path.Combine(_folder, "photo.png");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [fifo])) mkfifo.WaitForExit();
        // a blocked open would never return: the guard turns that into a failure instead of a hung test run
        var e = await Task.Run(() => Assert.Throws<ImageDecodingException>(() => ImageDecoder.DecodeFile(fifo))).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Contains(fifo, e.Message);
        Assert.Contains("not a regular file", e.Message);
    }

    [Fact]
    public void A_folder_is_refused()
    {
        var e = Assert.Throws<ImageDecodingException>(() => ImageDecoder.DecodeFile(_folder));
        Assert.Contains(_folder, e.Message);
        Assert.Contains("is a folder", e.Message);
    }
}
