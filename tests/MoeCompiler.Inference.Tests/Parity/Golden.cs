using System.Text.Json;

namespace MoeCompiler.Inference.Tests.Parity;

/// <summary>The optional second prompt of a golden: text, image A (the main pixels), text, image B, text.</summary>
public sealed record GoldenTwoImages(int[] InputIds, bool[] IsImageToken, int[] GeneratedIds, int[] LogitsShape);

/// <summary>One routing call of the reference: experts [T][k] in descending probability, combine weights.</summary>
public sealed record GoldenRouting(string Site, int Layer, string Call, int[][] Experts, double[][] Weights);

/// <summary>
/// The golden files tests/reference/moe_reference.py wrote for one tiny spec (TestData/&lt;spec&gt;/; format in
/// tests/reference/README.md).
/// </summary>
public sealed class Golden
{
    private Golden(string folder, JsonElement root)
    {
        Folder = folder;
        InputIds = Ints(root.GetProperty("inputIds"));
        IsImageToken = root.GetProperty("isImageToken").EnumerateArray().Select(e => e.GetBoolean()).ToArray();
        GeneratedIds = Ints(root.GetProperty("generatedIds"));
        // A text-only golden has no image: null shapes, no pixels or image-feature files.
        PixelsShape = IntsOrEmpty(root.GetProperty("pixelsShape"));
        LogitsShape = Ints(root.GetProperty("logitsShape"));
        StepLogitsShape = Ints(root.GetProperty("stepLogitsShape"));
        ImageFeaturesShape = IntsOrEmpty(root.GetProperty("imageFeaturesShape"));
        CheckpointDType = root.GetProperty("checkpointDType").GetString()!;
        Routing = ReadRouting(root.GetProperty("routing"));
        var bf16 = root.GetProperty("bf16");
        Bf16GeneratedIds = Ints(bf16.GetProperty("generatedIds"));
        Bf16Routing = ReadRouting(bf16.GetProperty("routing"));
        if (root.TryGetProperty("twoImages", out var two))
            TwoImages = new GoldenTwoImages(Ints(two.GetProperty("inputIds")),
                two.GetProperty("isImageToken").EnumerateArray().Select(e => e.GetBoolean()).ToArray(),
                Ints(two.GetProperty("generatedIds")), Ints(two.GetProperty("logitsShape")));
    }

    public static string Root => Path.Combine(AppContext.BaseDirectory, "TestData");

    public static Golden Load(string specFileName)
    {
        string folder = Path.Combine(Root, specFileName);
        using var json = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "golden.json")));
        return new Golden(folder, json.RootElement.Clone());
    }

    public string Folder { get; }
    public string CheckpointPath => Path.Combine(Folder, "model.safetensors");
    public int[] InputIds { get; }
    public bool[] IsImageToken { get; }
    public int[] GeneratedIds { get; }
    /// <summary>No pixels, no image features, no image placeholder: the golden of a text-only spec.</summary>
    public bool TextOnly => PixelsShape.Length == 0;
    /// <summary>Empty for a text-only golden.</summary>
    public int[] PixelsShape { get; }
    public int[] LogitsShape { get; }
    public int[] StepLogitsShape { get; }
    public int[] ImageFeaturesShape { get; }
    public string CheckpointDType { get; }
    public IReadOnlyList<GoldenRouting> Routing { get; }
    public int[] Bf16GeneratedIds { get; }
    public IReadOnlyList<GoldenRouting> Bf16Routing { get; }

    public GoldenTwoImages? TwoImages { get; }

    public float[] Pixels() => ReadFloats("pixels.bin", PixelsShape);
    public float[] SecondPixels() => ReadFloats("two_images_pixels2.bin", PixelsShape);
    public float[] TwoImagesLogits() => ReadFloats("two_images_logits.bin", TwoImages!.LogitsShape);
    public float[] Logits() => ReadFloats("logits.bin", LogitsShape);
    public float[] LogitsBf16() => ReadFloats("logits_bf16.bin", LogitsShape);
    public float[] StepLogits() => ReadFloats("step_logits.bin", StepLogitsShape);
    public float[] ImageFeatures() => ReadFloats("image_features.bin", ImageFeaturesShape);

    private float[] ReadFloats(string name, int[] shape)
    {
        byte[] bytes = File.ReadAllBytes(Path.Combine(Folder, name));
        long expected = shape.Aggregate(1L, (a, d) => a * d);
        Assert.True(bytes.Length == expected * 4, $"{name}: {bytes.Length} bytes, expected {expected} floats");
        var values = new float[expected];
        for (int i = 0; i < values.Length; i++) values[i] = BitConverter.ToSingle(bytes, i * 4); // little-endian files
        return values;
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    private static int[] IntsOrEmpty(JsonElement e) => e.ValueKind == JsonValueKind.Null ? [] : Ints(e);

    private static List<GoldenRouting> ReadRouting(JsonElement array) => array.EnumerateArray().Select(r => new GoldenRouting(
        r.GetProperty("site").GetString()!, r.GetProperty("layer").GetInt32(), r.GetProperty("call").GetString()!,
        r.GetProperty("experts").EnumerateArray().Select(Ints).ToArray(),
        r.GetProperty("weights").EnumerateArray().Select(w => w.EnumerateArray().Select(x => x.GetDouble()).ToArray()).ToArray())).ToList();
}

public static class Compare
{
    /// <summary>max |a − b| over all entries and max |b|.</summary>
    public static (double MaxDiff, double MaxRef, int At) MaxAbsDiff(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxDiff = 0, maxRef = 0;
        int at = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.False(float.IsNaN(actual[i]), $"NaN at {i}");
            double d = Math.Abs((double)actual[i] - expected[i]);
            if (d > maxDiff) { maxDiff = d; at = i; }
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }
        return (maxDiff, maxRef, at);
    }

    /// <summary>Asserts max |Δ| ≤ relative · max |expected|.</summary>
    public static void Within(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double relative, string what)
    {
        var (diff, maxRef, at) = MaxAbsDiff(actual, expected);
        Assert.True(diff <= relative * maxRef,
            $"{what}: max |Δ| = {diff:E3} at {at} exceeds {relative:E1} · max|ref| = {relative * maxRef:E3} (actual {(at >= 0 ? actual[at] : 0)}, expected {(at >= 0 ? expected[at] : 0)})");
    }
}
