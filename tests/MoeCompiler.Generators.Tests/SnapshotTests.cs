using Microsoft.CodeAnalysis;

namespace MoeCompiler.Generators.Tests;

/// <summary>Every shipped spec and every invalid fixture, compared with its committed snapshot.</summary>
public class SnapshotTests
{
    private const string Class = nameof(SnapshotTests);

    public static TheoryData<string> ShippedSpecs() => new(RepoPaths.ShippedSpecs().Select(Path.GetFileNameWithoutExtension)!);

    public static TheoryData<string> InvalidFixtures() => new(RepoPaths.InvalidFixtureFiles().Select(Path.GetFileNameWithoutExtension)!);

    [Theory]
    [MemberData(nameof(ShippedSpecs))]
    public void ShippedSpec(string stem)
    {
        var result = GeneratorHarness.RunFiles(Path.Combine(RepoPaths.ModelSpecs, stem + ".json"));
        Assert.Null(result.Exception);
        Assert.Empty(result.Diagnostics.Select(GeneratorHarness.Format));
        var variant = Assert.Single(result.GeneratedSources, s => s.HintName != "ModelCatalog.g.cs");
        Snapshot.VerifySource($"{Class}.{nameof(ShippedSpec)}_{stem}", variant.HintName, variant.SourceText.ToString());
    }

    [Fact]
    public void ShippedCatalog()
    {
        var result = GeneratorHarness.RunFiles(RepoPaths.ShippedSpecs());
        Assert.Empty(result.Diagnostics.Select(GeneratorHarness.Format));
        var catalog = Assert.Single(result.GeneratedSources, s => s.HintName == "ModelCatalog.g.cs");
        Snapshot.VerifySource($"{Class}.{nameof(ShippedCatalog)}", catalog.HintName, catalog.SourceText.ToString());
    }

    [Theory]
    [MemberData(nameof(InvalidFixtures))]
    public void InvalidFixture(string stem)
    {
        var result = GeneratorHarness.RunFiles(Path.Combine(RepoPaths.InvalidFixtures, stem + ".json"));
        Assert.Null(result.Exception);
        Assert.NotEmpty(result.Diagnostics);
        Assert.All(result.Diagnostics, d => Assert.Equal(DiagnosticSeverity.Error, d.Severity));
        // Nothing for the broken variant: the catalog is the only output, and it is empty.
        var only = Assert.Single(result.GeneratedSources);
        Assert.Equal("ModelCatalog.g.cs", only.HintName);
        Assert.DoesNotContain("ModelCatalogEntry(\"", only.SourceText.ToString());
        Snapshot.VerifyText($"{Class}.{nameof(InvalidFixture)}_{stem}", Describe(result));
    }

    [Fact]
    public void DuplicateNames()
    {
        var folder = Path.Combine(RepoPaths.InvalidFixtures, "duplicate-name");
        var result = GeneratorHarness.RunFiles(Path.Combine(folder, "a.json"), Path.Combine(folder, "b.json"));
        Assert.Equal(2, result.Diagnostics.Count(d => d.Id == "MOE014"));
        Assert.Single(result.GeneratedSources);
        Snapshot.VerifyText($"{Class}.{nameof(DuplicateNames)}", Describe(result));
    }

    [Fact]
    public void NamesDifferingOnlyInCaseAreDuplicates()
    {
        string text = File.ReadAllText(Path.Combine(RepoPaths.ModelSpecs, "tiny-qwen-moe.json"));
        var result = GeneratorHarness.Run(("/specs/a.json", text), ("/specs/b.json", text.Replace("\"TinyQwenMoe\"", "\"TINYQWENMOE\"", StringComparison.Ordinal)));
        Assert.Null(result.Exception);
        Assert.Equal(2, result.Diagnostics.Count(d => d.Id == "MOE014"));
        Assert.Equal("ModelCatalog.g.cs", Assert.Single(result.GeneratedSources).HintName);
    }

    [Fact]
    public void NoStaleSnapshots()
    {
        var expected = new HashSet<string>(StringComparer.Ordinal)
        {
            Snapshot.SourceFileName($"{Class}.{nameof(ShippedCatalog)}", "ModelCatalog.g.cs"),
            Snapshot.TextFileName($"{Class}.{nameof(DuplicateNames)}"),
        };
        foreach (var spec in RepoPaths.ShippedSpecs())
        {
            var result = GeneratorHarness.RunFiles(spec);
            foreach (var source in result.GeneratedSources.Where(s => s.HintName != "ModelCatalog.g.cs"))
            {
                expected.Add(Snapshot.SourceFileName($"{Class}.{nameof(ShippedSpec)}_{Path.GetFileNameWithoutExtension(spec)}", source.HintName));
            }
        }

        foreach (var fixture in RepoPaths.InvalidFixtureFiles())
        {
            expected.Add(Snapshot.TextFileName($"{Class}.{nameof(InvalidFixture)}_{Path.GetFileNameWithoutExtension(fixture)}"));
        }

        Snapshot.AssertNoStaleSnapshots(expected);
    }

    private static string Describe(GeneratorRunResult result) =>
        string.Join("\n", result.Diagnostics.Select(GeneratorHarness.Format).OrderBy(s => s, StringComparer.Ordinal)) + "\n";
}
