namespace MoeCompiler.Imaging.Tests;

public class PngEncoderTests
{
    [Fact]
    public void Round_trips_through_the_decoder()
    {
        var photo = Goldens.Source("photo");
        var encoded = PngEncoder.Encode(photo);
        Assert.Equal(ImageFormat.Png, ImageDecoder.DetectFormat(encoded));
        var decoded = ImageDecoder.Decode(encoded);
        Assert.Equal((photo.Width, photo.Height), (decoded.Width, decoded.Height));
        Assert.Equal(photo.Pixels, decoded.Pixels);
        Assert.True(encoded.Length < photo.Pixels.Length, "the encoder should compress a photo-like picture");
    }

    [Fact]
    public void One_pixel_round_trips()
    {
        var image = RgbImage.Filled(1, 1, 1, 2, 3);
        Assert.Equal(image.Pixels, ImageDecoder.Decode(PngEncoder.Encode(image)).Pixels);
    }

    [Fact]
    public void Write_does_not_overwrite_unless_asked()
    {
        var path = Path.Combine(Path.GetTempPath(), $"moe-png-{Guid.NewGuid():N}.png");
        try
        {
            var image = RgbImage.Filled(2, 2, 5, 6, 7);
            PngEncoder.Write(path, image);
            Assert.Throws<IOException>(() => PngEncoder.Write(path, image));
            PngEncoder.Write(path, RgbImage.Filled(2, 2, 8, 8, 8), overwrite: true);
            Assert.Equal(8, ImageDecoder.DecodeFile(path).Pixels[0]);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
