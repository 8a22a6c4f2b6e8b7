using System.Runtime.CompilerServices;

namespace MoeCompiler.Generators.Tests;

/// <summary>Source-tree locations (snapshots and fixtures live next to the tests, specs at the repo root).</summary>
internal static class RepoPaths
{
    public static string TestsDirectory { get; } = Here();
    public static string RepoRoot { get; } = Path.GetFullPath(Path.Combine(TestsDirectory, "..", ".."));
    public static string ModelSpecs { get; } = Path.Combine(RepoRoot, "modelspecs");
    public static string Snapshots { get; } = Path.Combine(TestsDirectory, "Snapshots");
    public static string ExampleSpec { get; } = Path.Combine(RepoRoot, "examples", "CustomVariant", "specs", "pocket-qwen-prmoe.json");
    public static string InvalidFixtures { get; } = Path.Combine(TestsDirectory, "Fixtures", "invalid");

    /// <summary>Every shipped spec file (not the schema), ordinal order.</summary>
    public static string[] ShippedSpecs()
    {
        var files = Directory.GetFiles(ModelSpecs, "*.json").Where(f => !f.EndsWith(".schema.json", StringComparison.Ordinal)).ToArray();
        Array.Sort(files, StringComparer.Ordinal);
        return files;
    }

    public static string[] InvalidFixtureFiles()
    {
        var files = Directory.GetFiles(InvalidFixtures, "*.json");
        Array.Sort(files, StringComparer.Ordinal);
        return files;
    }

    private static string Here([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;
}
