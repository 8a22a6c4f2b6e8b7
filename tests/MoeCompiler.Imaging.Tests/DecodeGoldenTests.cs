namespace MoeCompiler.Imaging.Tests;

public class DecodeGoldenTests
{
    public static IEnumerable<object[]> Cases => Goldens.Names("decode");

    [Theory]
    [MemberData(nameof(Cases))]
    public void Decode_matches_golden(string name)
    {
        var c = Goldens.Case("decode", name);
        var image = ImageDecoder.DecodeFile(Goldens.PathOf(c.GetProperty("file").GetString()!));
        Assert.Equal(c.GetProperty("width").GetInt32(), image.Width);
        Assert.Equal(c.GetProperty("height").GetInt32(), image.Height);
        var expected = Goldens.Bytes(c.GetProperty("golden").GetString()!);
        var (maxDiff, at) = Goldens.Compare(image.Pixels, expected);
        int tolerance = c.GetProperty("tolerance").GetInt32();
        if (maxDiff > tolerance)
            Assert.Fail($"{name}: max difference {maxDiff} (tolerance {tolerance}) at pixel {at / 3} channel {at % 3}: got {image.Pixels[at]}, golden {expected[at]}");
    }

    [Fact]
    public void Jpeg_decoding_is_bit_exact_with_libjpeg_turbo_on_the_committed_set()
    {
        // The contract allows 1 level, but the decoder follows libjpeg-turbo's integer arithmetic step by step;
        // on every committed JPEG it reproduces djpeg exactly, so any drift shows up here first.
        long differing = 0, total = 0;
        foreach (var c in Goldens.Section("decode").Where(c => c.GetProperty("tolerance").GetInt32() == 1))
        {
            var image = ImageDecoder.DecodeFile(Goldens.PathOf(c.GetProperty("file").GetString()!));
            var expected = Goldens.Bytes(c.GetProperty("golden").GetString()!);
            for (int i = 0; i < expected.Length; i++) if (image.Pixels[i] != expected[i]) differing++;
            total += expected.Length;
        }
        Assert.True(total > 0);
        Assert.True(differing == 0, $"{differing} of {total} JPEG samples differ from djpeg");
    }

    [Fact]
    public void Format_is_sniffed_from_bytes_not_the_extension()
    {
        var path = Goldens.PathOf("images/really_a_jpeg.png");
        Assert.Equal(ImageFormat.Jpeg, ImageDecoder.DetectFormat(File.ReadAllBytes(path)));
        var image = ImageDecoder.DecodeFile(path);
        var expected = Goldens.Bytes("goldens/photo.rgb");
        Assert.True(Goldens.Compare(image.Pixels, expected).MaxDiff <= 1);
    }

    [Fact]
    public void Exif_orientation_can_be_ignored()
    {
        var data = Goldens.Bytes("images/jpeg_exif_6.jpg");
        var upright = ImageDecoder.Decode(data);
        var raw = ImageDecoder.Decode(data, new ImageDecodeOptions { ApplyExifOrientation = false });
        Assert.Equal((15, 23), (upright.Width, upright.Height));
        Assert.Equal((23, 15), (raw.Width, raw.Height));
        var stored = ImageDecoder.Decode(Goldens.Bytes("images/jpeg_exif_1.jpg"));
        Assert.Equal(stored.Pixels, raw.Pixels);
    }
}
