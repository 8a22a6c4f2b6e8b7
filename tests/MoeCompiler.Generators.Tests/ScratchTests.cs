namespace MoeCompiler.Generators.Tests;

public class ScratchTests
{
    [Fact]
    public void Dump()
    {
        var r = GeneratorHarness.RunFiles(RepoPaths.ShippedSpecs());
        Directory.CreateDirectory("/tmp/gen-out");
        foreach (var s in r.GeneratedSources) File.WriteAllText("/tmp/gen-out/" + s.HintName, s.SourceText.ToString());
        File.WriteAllText("/tmp/gen-out/diags.txt", string.Join("\n", r.Diagnostics.Select(GeneratorHarness.Format)) + "\n" + r.Exception);
    }
}
