using System.Security.Cryptography;
using MoeCompiler.Imaging.Processing;

namespace MoeCompiler.Imaging.Tests;

public class PreprocessingTests
{
    public static IEnumerable<object[]> ResizeCases => Goldens.Names("resize");
    public static IEnumerable<object[]> PreprocessCases => Goldens.Names("preprocess");

    [Theory]
    [MemberData(nameof(ResizeCases))]
    public void Bicubic_resize_is_bit_exact_with_Pillow(string name)
    {
        var c = Goldens.Case("resize", name);
        var source = Goldens.Source(c.GetProperty("source").GetString()!);
        var resized = PillowResize.Bicubic(source, c.GetProperty("width").GetInt32(), c.GetProperty("height").GetInt32());
        var expected = Goldens.Bytes(c.GetProperty("golden").GetString()!);
        Assert.Equal(expected.Length, resized.Pixels.Length);
        var (maxDiff, at) = Goldens.Compare(resized.Pixels, expected);
        Assert.True(maxDiff == 0, $"{name}: differs by {maxDiff} at byte {at}");
    }

    [Theory]
    [MemberData(nameof(PreprocessCases))]
    public void Preprocessing_matches_the_Pillow_numpy_pipeline(string name)
    {
        var c = Goldens.Case("preprocess", name);
        var source = Goldens.Source(c.GetProperty("source").GetString()!);
        int size = c.GetProperty("size").GetInt32();
        var spec = (c.GetProperty("tower").GetString() == "clip" ? VisionPreprocessing.Clip(size) : VisionPreprocessing.Siglip(size))
            with { PadToSquare = c.GetProperty("pad").GetBoolean() };

        var prepared = spec.Prepare(source);
        Assert.Equal((size, size), (prepared.Width, prepared.Height));
        Assert.Equal(c.GetProperty("prepared_sha256").GetString(), Convert.ToHexStringLower(SHA256.HashData(prepared.Pixels)));

        var tensor = spec.Apply(source);
        Assert.Equal(3 * size * size, tensor.Length);
        foreach (var sample in c.GetProperty("tensor_samples").EnumerateArray())
        {
            int index = sample[0].GetInt32();
            Assert.True(Math.Abs(tensor[index] - sample[1].GetDouble()) <= 1e-6, $"{name}[{index}]: {tensor[index]} vs {sample[1].GetDouble()}");
        }
        if (c.TryGetProperty("tensor", out var file))
        {
            var bytes = Goldens.Bytes(file.GetString()!);
            var expected = new float[bytes.Length / 4];
            Buffer.BlockCopy(bytes, 0, expected, 0, bytes.Length);
            Assert.Equal(expected.Length, tensor.Length);
            double worst = 0;
            for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - tensor[i]));
            Assert.True(worst <= 1e-6, $"{name}: max |difference| {worst}");
        }
    }

    [Fact]
    public void Pad_colours_are_int_of_mean_times_255()
    {
        Assert.Equal(((byte)122, (byte)116, (byte)104), VisionPreprocessing.Clip().PadColor);
        Assert.Equal(((byte)127, (byte)127, (byte)127), VisionPreprocessing.Siglip().PadColor);
    }

    [Fact]
    public void Expand_to_square_centres_the_picture()
    {
        var image = RgbImage.Filled(3, 1, 9, 9, 9);
        var square = VisionPreprocessing.ExpandToSquare(image, (1, 2, 3));
        Assert.Equal((3, 3), (square.Width, square.Height));
        Assert.Equal(new byte[] { 1, 2, 3, 1, 2, 3, 1, 2, 3, 9, 9, 9, 9, 9, 9, 9, 9, 9, 1, 2, 3, 1, 2, 3, 1, 2, 3 }, square.Pixels);
    }

    [Fact]
    public void Default_sizes_and_layout()
    {
        var image = RgbImage.Filled(5, 7, 255, 0, 128);
        var clip = VisionPreprocessing.Clip().Apply(image);
        var siglip = VisionPreprocessing.Siglip().Apply(image);
        Assert.Equal(3 * 336 * 336, clip.Length);
        Assert.Equal(3 * 384 * 384, siglip.Length);
        // A flat picture (after padding the sides are the pad colour): the centre is the picture's colour.
        int centre = 192 * 384 + 192;
        Assert.Equal(1f, siglip[centre], 6);
        Assert.Equal(-1f, siglip[384 * 384 + centre], 6);
    }
}

public class CanvasResizeTests
{
    [Theory]
    [InlineData(40, 17, 33, 29)]
    [InlineData(17, 40, 12, 50)]
    [InlineData(25, 25, 9, 9)]
    public void Resizing_through_a_virtual_canvas_equals_resizing_the_padded_picture(int w, int h, int outW, int outH)
    {
        var random = new Random(w * 100 + h);
        var pixels = new byte[w * h * 3];
        random.NextBytes(pixels);
        var image = new RgbImage(w, h, pixels);
        var background = ((byte)122, (byte)116, (byte)104);
        var padded = VisionPreprocessing.ExpandToSquare(image, background);
        int s = padded.Width;
        var expected = Processing.PillowResize.Bicubic(padded, outW, outH);
        var actual = Processing.PillowResize.BicubicOnCanvas(image, s, s, (s - w) / 2, (s - h) / 2, background, outW, outH);
        Assert.Equal(expected.Pixels, actual.Pixels);
    }
}
