using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using static MoeCompiler.Generators.ModelSpecGenerator;

namespace MoeCompiler.Generators.Tests;

/// <summary>The pipeline caches: reruns without changes, unrelated C# edits and single-spec edits.</summary>
public class IncrementalTests
{
    private static readonly string[] Specs = { "tiny-stablelm-moe", "tiny-qwen-moe", "tiny-phi-moe" };

    private static (GeneratorDriver Driver, CSharpCompilation Compilation, List<AdditionalText> Texts) FirstRun()
    {
        var texts = Specs.Select(s => (AdditionalText)new InMemoryAdditionalText("/specs/" + s + ".json",
            File.ReadAllText(Path.Combine(RepoPaths.ModelSpecs, s + ".json")))).ToList();
        var compilation = GeneratorHarness.EmptyCompilation(CSharpSyntaxTree.ParseText("namespace App { public class Program { } }", path: "Program.cs"));
        var driver = GeneratorHarness.CreateDriver(texts, track: true).RunGenerators(compilation);
        var first = driver.GetRunResult().Results.Single();
        Assert.Equal(Specs.Length + 1, first.GeneratedSources.Length);
        Assert.All(first.TrackedSteps[Steps.ParsedSpecs].SelectMany(s => s.Outputs), o => Assert.Equal(IncrementalStepRunReason.New, o.Reason));
        return (driver, compilation, texts);
    }

    private static IncrementalStepRunReason[] Reasons(GeneratorRunResult result, string step) =>
        result.TrackedSteps[step].SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();

    private static IncrementalStepRunReason[] OutputReasons(GeneratorRunResult result) =>
        result.TrackedOutputSteps.SelectMany(kv => kv.Value).SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();

    [Fact]
    public void RerunWithUnchangedInputsIsFullyCached()
    {
        var (driver, compilation, _) = FirstRun();
        var result = driver.RunGenerators(compilation).GetRunResult().Results.Single();
        foreach (var step in new[] { Steps.SpecFiles, Steps.ParsedSpecs, Steps.VariantNames, Steps.CheckedSpecs, Steps.CatalogEntries })
        {
            Assert.All(Reasons(result, step), r => Assert.Equal(IncrementalStepRunReason.Cached, r));
        }

        Assert.All(OutputReasons(result), r => Assert.Equal(IncrementalStepRunReason.Cached, r));
    }

    [Fact]
    public void UnrelatedCSharpEditRunsNothing()
    {
        var (driver, compilation, _) = FirstRun();
        var old = compilation.SyntaxTrees.Single();
        var edited = compilation.ReplaceSyntaxTree(old, CSharpSyntaxTree.ParseText("namespace App { public class Program { static void Main() { } } }", path: "Program.cs"));
        var result = driver.RunGenerators(edited).GetRunResult().Results.Single();
        Assert.Equal(Specs.Length, Reasons(result, Steps.ParsedSpecs).Length);
        foreach (var step in new[] { Steps.SpecFiles, Steps.ParsedSpecs, Steps.VariantNames, Steps.CheckedSpecs, Steps.CatalogEntries })
        {
            Assert.All(Reasons(result, step), r => Assert.Equal(IncrementalStepRunReason.Cached, r));
        }

        // The catalog's class name is looked up again in the new compilation, found equal, and nothing is re-emitted.
        Assert.Equal(IncrementalStepRunReason.Unchanged, Assert.Single(Reasons(result, Steps.CatalogName)));

        Assert.All(OutputReasons(result), r => Assert.Equal(IncrementalStepRunReason.Cached, r));
    }

    [Fact]
    public void MovingTextInASpecReReportsDiagnosticsButDoesNotReEmitCode()
    {
        var (driver, compilation, texts) = FirstRun();
        var qwen = texts.Single(t => t.Path.EndsWith("tiny-qwen-moe.json", StringComparison.Ordinal));
        // Blank lines before the content: every position moves, no value changes.
        string text = "\n\n" + qwen.GetText()!.ToString().Replace("{\n", "{\n\n", StringComparison.Ordinal);
        driver = driver.ReplaceAdditionalText(qwen, new InMemoryAdditionalText(qwen.Path, text));
        var result = driver.RunGenerators(compilation).GetRunResult().Results.Single();

        // The parse result holds positions, so it changed ...
        Assert.Equal(1, Reasons(result, Steps.ParsedSpecs).Count(r => r == IncrementalStepRunReason.Modified));
        Assert.Equal(1, Reasons(result, Steps.CheckedSpecs).Count(r => r == IncrementalStepRunReason.Modified));
        // ... but the variant model holds none: equal to the last run's, so its source is not produced again.
        Assert.All(Reasons(result, Steps.VariantModels), r => Assert.Contains(r, new[] { IncrementalStepRunReason.Unchanged, IncrementalStepRunReason.Cached }));
        Assert.All(Reasons(result, Steps.CatalogEntries), r => Assert.Contains(r, new[] { IncrementalStepRunReason.Unchanged, IncrementalStepRunReason.Cached }));
        Assert.DoesNotContain(IncrementalStepRunReason.New, OutputReasons(result));
        Assert.DoesNotContain(IncrementalStepRunReason.Modified, OutputReasons(result));
    }

    [Fact]
    public void ABrokenSpecReportsItsDiagnosticsThroughTheirOwnOutput()
    {
        var (driver, compilation, texts) = FirstRun();
        var qwen = texts.Single(t => t.Path.EndsWith("tiny-qwen-moe.json", StringComparison.Ordinal));
        string text = qwen.GetText()!.ToString().Replace("\"family\": \"qwen\"", "\"family\": \"qwenn\"", StringComparison.Ordinal);
        Assert.NotEqual(qwen.GetText()!.ToString(), text);
        driver = driver.ReplaceAdditionalText(qwen, new InMemoryAdditionalText(qwen.Path, text));
        var run = driver.RunGenerators(compilation).GetRunResult();
        Assert.Contains(run.Diagnostics, d => d.Id == "MOE016");
        Assert.Equal(Specs.Length, run.Results.Single().GeneratedSources.Length); // two variants and the catalog
        Assert.Equal(1, Reasons(run.Results.Single(), Steps.Diagnostics).Count(r => r == IncrementalStepRunReason.Modified));
    }

    [Fact]
    public void EditingOneSpecRegeneratesOnlyThatVariant()
    {
        var (driver, compilation, texts) = FirstRun();
        var before = driver.GetRunResult().Results.Single().GeneratedSources.ToDictionary(s => s.HintName, s => s.SourceText.ToString());
        var qwen = texts.Single(t => t.Path.EndsWith("tiny-qwen-moe.json", StringComparison.Ordinal));
        // A change that alters the variant's code but neither its name nor its catalog entry.
        string text = qwen.GetText()!.ToString().Replace("\"normEps\": 1e-06,\n    \"ropeTheta\"", "\"normEps\": 1e-05,\n    \"ropeTheta\"", StringComparison.Ordinal);
        Assert.NotEqual(qwen.GetText()!.ToString(), text);
        driver = driver.ReplaceAdditionalText(qwen, new InMemoryAdditionalText(qwen.Path, text));
        var result = driver.RunGenerators(compilation).GetRunResult().Results.Single();

        var parsed = Reasons(result, Steps.ParsedSpecs);
        Assert.Equal(1, parsed.Count(r => r == IncrementalStepRunReason.Modified));
        Assert.Equal(Specs.Length - 1, parsed.Count(r => r == IncrementalStepRunReason.Cached));
        // Names did not change, so the duplicate-name check of the other specs is not redone.
        Assert.All(Reasons(result, Steps.VariantNames), r => Assert.Contains(r, new[] { IncrementalStepRunReason.Unchanged, IncrementalStepRunReason.Cached }));
        var checkedSpecs = Reasons(result, Steps.CheckedSpecs);
        Assert.Equal(1, checkedSpecs.Count(r => r == IncrementalStepRunReason.Modified));
        Assert.Equal(Specs.Length - 1, checkedSpecs.Count(r => r == IncrementalStepRunReason.Cached));
        // The catalog's inputs are equal, so it is not rewritten.
        Assert.All(Reasons(result, Steps.CatalogEntries), r => Assert.Contains(r, new[] { IncrementalStepRunReason.Unchanged, IncrementalStepRunReason.Cached }));

        var outputs = OutputReasons(result);
        Assert.Equal(1, outputs.Count(r => r == IncrementalStepRunReason.Modified));
        var after = result.GeneratedSources.ToDictionary(s => s.HintName, s => s.SourceText.ToString());
        Assert.NotEqual(before["TinyQwenMoe.g.cs"], after["TinyQwenMoe.g.cs"]);
        Assert.Contains("NormEpsilon = 1E-05f", after["TinyQwenMoe.g.cs"]);
        foreach (var hint in new[] { "TinyStableLmMoe.g.cs", "TinyPhiMoe.g.cs", "ModelCatalog.g.cs" }) Assert.Equal(before[hint], after[hint]);
    }

    [Fact]
    public void BreakingOneSpecKeepsTheOthers()
    {
        var (driver, compilation, texts) = FirstRun();
        var phi = texts.Single(t => t.Path.EndsWith("tiny-phi-moe.json", StringComparison.Ordinal));
        driver = driver.ReplaceAdditionalText(phi, new InMemoryAdditionalText(phi.Path, phi.GetText()!.ToString().Replace("\"layers\": 4,", "\"layers\": \"four\",", StringComparison.Ordinal)));
        var result = driver.RunGenerators(compilation).GetRunResult().Results.Single();
        Assert.Equal(new[] { "ModelCatalog.g.cs", "TinyQwenMoe.g.cs", "TinyStableLmMoe.g.cs" }, result.GeneratedSources.Select(s => s.HintName).OrderBy(h => h, StringComparer.Ordinal));
        var diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("MOE004", diagnostic.Id);
        Assert.EndsWith("tiny-phi-moe.json", diagnostic.Location.GetLineSpan().Path, StringComparison.Ordinal);
    }

    [Fact]
    public void OutputIsDeterministicAcrossFileOrder()
    {
        var forward = GeneratorHarness.RunFiles(RepoPaths.ShippedSpecs());
        var backward = GeneratorHarness.RunFiles(RepoPaths.ShippedSpecs().Reverse().ToArray());
        var a = forward.GeneratedSources.ToDictionary(s => s.HintName, s => s.SourceText.ToString());
        var b = backward.GeneratedSources.ToDictionary(s => s.HintName, s => s.SourceText.ToString());
        Assert.Equal(a.Keys.OrderBy(k => k, StringComparer.Ordinal), b.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var key in a.Keys) Assert.Equal(a[key], b[key]);
    }

    [Fact]
    public void NonSpecAdditionalFilesAreIgnored()
    {
        var result = GeneratorHarness.Run(("/specs/moe-spec.schema.json", "{ \"not\": \"a spec\" }"), ("/specs/readme.md", "# hi"));
        Assert.Empty(result.Diagnostics);
        Assert.Equal("ModelCatalog.g.cs", Assert.Single(result.GeneratedSources).HintName);
    }
}
