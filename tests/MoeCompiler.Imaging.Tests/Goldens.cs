using System.Text.Json;

namespace MoeCompiler.Imaging.Tests;

/// <summary>Access to the committed test images and the goldens made by TestData/make_image_goldens.py.</summary>
internal static class Goldens
{
    public static string Root => Path.Combine(AppContext.BaseDirectory, "TestData");

    public static string PathOf(string relative) => Path.Combine(Root, relative);

    public static byte[] Bytes(string relative) => File.ReadAllBytes(PathOf(relative));

    private static readonly Lazy<JsonDocument> Manifest = new(() => JsonDocument.Parse(File.ReadAllText(PathOf("manifest.json"))));

    public static IEnumerable<JsonElement> Section(string name) => Manifest.Value.RootElement.GetProperty(name).EnumerateArray();

    public static JsonElement Case(string section, string name) => Section(section).Single(e => e.GetProperty("name").GetString() == name);

    public static IEnumerable<object[]> Names(string section) => Section(section).Select(e => new object[] { e.GetProperty("name").GetString()! });

    public static RgbImage Source(string name) => name switch
    {
        "photo" => new RgbImage(200, 150, Bytes("goldens/photo.rgb")),
        "small" => new RgbImage(23, 15, Bytes("goldens/resize_small_23x15.rgb")),
        "tall" => Crop(new RgbImage(200, 150, Bytes("goldens/photo.rgb")), 40),
        _ => throw new ArgumentException(name),
    };

    private static RgbImage Crop(RgbImage image, int width)
    {
        var pixels = new byte[width * image.Height * 3];
        for (int y = 0; y < image.Height; y++)
            image.Pixels.AsSpan(y * image.Width * 3, width * 3).CopyTo(pixels.AsSpan(y * width * 3));
        return new RgbImage(width, image.Height, pixels);
    }

    /// <summary>The largest per-sample difference, and where (for a useful failure message).</summary>
    public static (int MaxDiff, int Index) Compare(ReadOnlySpan<byte> actual, ReadOnlySpan<byte> expected)
    {
        int max = 0, at = -1;
        for (int i = 0; i < actual.Length; i++)
        {
            int d = Math.Abs(actual[i] - expected[i]);
            if (d > max) { max = d; at = i; }
        }
        return (max, at);
    }
}
