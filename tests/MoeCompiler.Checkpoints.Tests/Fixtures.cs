using System.Text.Json;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Checkpoints.Tests;

/// <summary>The committed fixtures (TestData/, made by make_fixtures.py) and what they contain.</summary>
internal static class Fixtures
{
    public static string Root => Path.Combine(AppContext.BaseDirectory, "TestData");
    public static string Path_(params string[] parts) => Path.Combine(new[] { Root }.Concat(parts).ToArray());

    public sealed record ExpectedTensor(string DType, int[] Shape, float[] Values);

    private static readonly Lazy<Dictionary<string, Dictionary<string, ExpectedTensor>>> All = new(Load);

    public static IReadOnlyDictionary<string, ExpectedTensor> Expected(string fixture) => All.Value[fixture];

    private static Dictionary<string, Dictionary<string, ExpectedTensor>> Load()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path_("expected.json")));
        var result = new Dictionary<string, Dictionary<string, ExpectedTensor>>();
        foreach (var fixture in doc.RootElement.EnumerateObject())
        {
            var tensors = new Dictionary<string, ExpectedTensor>(StringComparer.Ordinal);
            foreach (var t in fixture.Value.EnumerateObject())
            {
                var shape = t.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
                var values = t.Value.GetProperty("values").EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String
                    ? e.GetString() switch { "inf" => float.PositiveInfinity, "-inf" => float.NegativeInfinity, _ => float.NaN }
                    : e.GetSingle()).ToArray();
                tensors.Add(t.Name, new ExpectedTensor(t.Value.GetProperty("dtype").GetString()!, shape, values));
            }
            result.Add(fixture.Name, tensors);
        }
        return result;
    }

    /// <summary>A manifest asking for exactly the tensors of a fixture with their shapes.</summary>
    public static WeightManifest ManifestOf(string fixture, params string[] ignored) => new(
        "Test_" + fixture,
        Expected(fixture).Where(p => !ignored.Any(i => WeightBinder.WildcardRegex(i).IsMatch(p.Key)))
            .Select(p => new WeightEntry(p.Key, p.Value.Shape, WeightRole.Attention)).ToList(),
        ignored);

    public static void AssertMatches(ExpectedTensor expected, Tensor actual)
    {
        Assert.Equal(expected.DType, actual.DType.SafetensorsName());
        Assert.Equal(expected.Shape, actual.Shape.ToArray());
        // Fixture values are exact float32 values written in shortest round-trip form: compare exactly.
        Assert.Equal(expected.Values, actual.ToFloatArray());
    }
}

/// <summary>A fresh temporary folder, deleted with everything in it.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "moe-ckpt-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }
    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Writes minimal zip archives (stored or deflated entries) to build torch.save-like files by hand.</summary>
internal static class ZipBuilder
{
    public static byte[] Build(IEnumerable<(string Name, byte[] Data)> entries, bool deflate = false)
    {
        using var stream = new MemoryStream();
        using (var zip = new System.IO.Compression.ZipArchive(stream, System.IO.Compression.ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, data) in entries)
            {
                var entry = zip.CreateEntry(name, deflate ? System.IO.Compression.CompressionLevel.Optimal : System.IO.Compression.CompressionLevel.NoCompression);
                using var s = entry.Open();
                s.Write(data);
            }
        }
        return stream.ToArray();
    }

    /// <summary>The entries of an existing zip (e.g. a torch fixture), to rebuild it with changes.</summary>
    public static List<(string Name, byte[] Data)> Read(string path)
    {
        using var zip = System.IO.Compression.ZipFile.OpenRead(path);
        return zip.Entries.Select(e =>
        {
            using var s = e.Open();
            using var m = new MemoryStream();
            s.CopyTo(m);
            return (e.FullName, m.ToArray());
        }).ToList();
    }
}
