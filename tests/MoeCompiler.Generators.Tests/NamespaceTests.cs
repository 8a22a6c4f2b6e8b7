using System.Diagnostics.CodeAnalysis;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;

namespace MoeCompiler.Generators.Tests;

/// <summary>The MSBuild property MoeCompilerNamespace picks the namespace of the generated code.</summary>
public class NamespaceTests
{
    private static GeneratorRunResult Run(string? ns)
    {
        var spec = new InMemoryAdditionalText("/specs/tiny-qwen-moe.json", File.ReadAllText(Path.Combine(RepoPaths.ModelSpecs, "tiny-qwen-moe.json")));
        var options = new PropertyOptions(ns is null ? new Dictionary<string, string>() : new Dictionary<string, string> { ["build_property.MoeCompilerNamespace"] = ns });
        GeneratorDriver driver = CSharpGeneratorDriver.Create(
            new[] { new ModelSpecGenerator().AsSourceGenerator() }, new AdditionalText[] { spec },
            new CSharpParseOptions(LanguageVersion.Latest), options);
        return driver.RunGenerators(GeneratorHarness.EmptyCompilation()).GetRunResult().Results.Single();
    }

    [Fact]
    public void WithoutThePropertyTheNamespaceIsMoeCompilerModels()
    {
        var result = Run(null);
        Assert.All(result.GeneratedSources, s => Assert.Contains("namespace MoeCompiler.Models\n", s.SourceText.ToString(), StringComparison.Ordinal));
    }

    [Fact]
    public void ThePropertyMovesVariantsAndCatalogIntoItsNamespace()
    {
        var result = Run("Contoso.Vision.Models");
        Assert.Empty(result.Diagnostics);
        Assert.Equal(2, result.GeneratedSources.Length);
        Assert.All(result.GeneratedSources, s =>
        {
            string text = s.SourceText.ToString();
            Assert.Contains("namespace Contoso.Vision.Models\n", text, StringComparison.Ordinal);
            Assert.DoesNotContain("namespace MoeCompiler.Models", text, StringComparison.Ordinal);
        });
    }

    [Theory]
    [InlineData("1Bad")]
    [InlineData("My..Models")]
    [InlineData("class.Models")]
    public void AnInvalidNamespaceIsMoe023AndTheDefaultIsUsed(string ns)
    {
        var result = Run(ns);
        var diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("MOE023", diagnostic.Id);
        Assert.Contains(ns, diagnostic.GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
        Assert.All(result.GeneratedSources, s => Assert.Contains("namespace MoeCompiler.Models\n", s.SourceText.ToString(), StringComparison.Ordinal));
    }

    [Fact]
    public void ThePackagePropsMakeThePropertyVisibleToTheGenerator()
    {
        string props = File.ReadAllText(Path.Combine(RepoPaths.RepoRoot, "generators", "MoeCompiler.Generators", "build", "MoeCompiler.Generators.props"));
        Assert.Contains("<CompilerVisibleProperty Include=\"MoeCompilerNamespace\" />", props, StringComparison.Ordinal);
    }

    private sealed class PropertyOptions(Dictionary<string, string> values) : AnalyzerConfigOptionsProvider
    {
        private readonly Options _global = new(values);
        public override AnalyzerConfigOptions GlobalOptions => _global;
        public override AnalyzerConfigOptions GetOptions(SyntaxTree tree) => new Options([]);
        public override AnalyzerConfigOptions GetOptions(AdditionalText textFile) => new Options([]);

        private sealed class Options(Dictionary<string, string> values) : AnalyzerConfigOptions
        {
            public override bool TryGetValue(string key, [NotNullWhen(true)] out string? value) => values.TryGetValue(key, out value);
        }
    }
}
