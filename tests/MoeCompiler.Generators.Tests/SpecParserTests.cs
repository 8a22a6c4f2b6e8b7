using MoeCompiler.Generators.Model;
using MoeCompiler.Generators.Parsing;

namespace MoeCompiler.Generators.Tests;

public class SpecParserTests
{
    private const string Minimal = """
        {
          "name": "Minimal",
          "llm": { "family": "mistral", "vocabSize": 64, "hiddenSize": 32, "layers": 3, "heads": 4,
                   "ffnSize": 48, "ffnKind": "swiglu", "norm": "rmsnorm", "normEps": 1e-5 },
          "vision": { "tower": "clip", "imageSize": 28, "patchSize": 14, "hiddenSize": 16, "layers": 2, "heads": 2,
                      "mlpSize": 32, "normEps": 1e-5 },
          "tokenizer": { "kind": "sentencepiece", "eos": [2] },
          "prompt": { "template": "plain" }
        }
        """;

    [Fact]
    public void OptionalKeysTakeTheirDocumentedDefaults()
    {
        var result = SpecParser.Parse("/x/minimal.json", Minimal);
        Assert.Empty(result.Diagnostics);
        var v = result.Variant!;
        Assert.Equal(("Minimal", "", "minimal.json"), (v.DisplayName, v.Description, v.FileName));
        Assert.Equal((64, 4, 8, 8, 10000.0, 4096), (v.Llm.TokenizerSize, v.Llm.KvHeads, v.Llm.HeadDim, v.Llm.RotaryDims, v.Llm.RopeTheta, v.Llm.MaxPositions));
        Assert.False(v.Llm.QkvBias || v.Llm.ParallelResidual || v.Llm.LmHeadBias);
        Assert.Null(v.Moe);
        Assert.Equal((-2, SelectFeature.Patch, 1), (v.Vision!.SelectLayer, v.Vision.SelectFeature, v.Vision.UsedLayers));
        Assert.Equal(new[] { 1 }, v.Vision.Scales);
        Assert.Equal(("mlp2x_gelu", CheckpointLayout.MoeLlava), (v.Projector!.Kind, v.Layout));
        Assert.Null(v.Tokenizer.Bos);
    }

    [Theory]
    [InlineData("interval", "\"start\": 1, \"step\": 2", new[] { 1, 3, 5 })]
    [InlineData("interval", "\"step\": 3", new[] { 0, 3 })]
    [InlineData("all", "", new[] { 0, 1, 2, 3, 4, 5 })]
    [InlineData("first-half", "", new[] { 0, 1, 2 })]
    [InlineData("second-half", "", new[] { 3, 4, 5 })]
    [InlineData("list", "\"layers\": [5, 1]", new[] { 1, 5 })]
    public void PlacementsResolveToLayerIndices(string kind, string extra, int[] expected)
    {
        string placement = "{ \"kind\": \"" + kind + "\"" + (extra.Length > 0 ? ", " + extra : "") + " }";
        string text = Minimal.Replace("\"layers\": 3,", "\"layers\": 6,", StringComparison.Ordinal)
            .Replace("\"prompt\"", "\"moe\": { \"experts\": 4, \"topK\": 2, \"placement\": " + placement + " },\n  \"prompt\"", StringComparison.Ordinal);
        var result = SpecParser.Parse("p.json", text);
        Assert.Empty(result.Diagnostics);
        Assert.Equal(expected, result.Variant!.Moe!.Layers);
    }

    [Fact]
    public void EveryProblemInAFileIsReportedInOnePass()
    {
        string text = Minimal.Replace("\"heads\": 4,", "\"heads\": 5, \"kvHeds\": 2,", StringComparison.Ordinal)
            .Replace("\"clip\"", "\"clip3\"", StringComparison.Ordinal)
            .Replace("\"plain\"", "\"chat\"", StringComparison.Ordinal);
        var ids = SpecParser.Parse("many.json", text).Diagnostics.Select(d => d.DescriptorId).OrderBy(i => i, StringComparer.Ordinal).ToArray();
        Assert.Equal(new[] { "MOE002", "MOE007", "MOE016", "MOE016" }, ids);
    }

    [Theory]
    [InlineData("Valid_Name1", true)]
    [InlineData("_x", true)]
    [InlineData("1abc", false)]
    [InlineData("with-dash", false)]
    [InlineData("namespace", false)]
    [InlineData("ModelCatalog", false)]
    [InlineData("VisionTower", false)]
    [InlineData("Block3", false)]
    [InlineData("Blocky", true)]
    [InlineData("TinyConstants", false)]
    [InlineData("", false)]
    public void VariantNamesMustBeCSharpIdentifiers(string name, bool valid) => Assert.Equal(valid, SpecParser.IsValidIdentifier(name));

    [Fact]
    public void SuggestionsPickTheNearestKnownWord()
    {
        Assert.Equal("hiddenSize", ObjectReader.Suggest("hidensize", new[] { "heads", "hiddenSize", "layers" }));
        Assert.Equal("mixtral", ObjectReader.Suggest("mixtrall", SpecNames.Families.Names));
        Assert.Null(ObjectReader.Suggest("flashAttention", new[] { "heads", "hiddenSize", "layers" }));
    }

    /// <summary>Minimal with its "vision" member replaced by <paramref name="replacement"/> (members and a trailing comma, or nothing).</summary>
    private static string WithoutVision(string replacement)
    {
        int start = Minimal.IndexOf("\"vision\"", StringComparison.Ordinal);
        int end = Minimal.IndexOf("},", start, StringComparison.Ordinal) + 2;
        return Minimal.Remove(start, end - start).Insert(start, replacement);
    }

    [Theory]
    [InlineData("")]
    [InlineData("\"vision\": null,")]
    [InlineData("\"vision\": null, \"projector\": null,")]
    [InlineData("\"projector\": null,")]
    public void NoVisionTowerMakesATextOnlyVariantWithoutAProjector(string keys)
    {
        string text = WithoutVision(keys);
        Assert.DoesNotContain("clip", text, StringComparison.Ordinal);
        var result = SpecParser.Parse("t.json", text);
        Assert.Empty(result.Diagnostics);
        var v = result.Variant!;
        Assert.False(v.HasVision);
        Assert.Null(v.Vision);
        Assert.Null(v.Projector);
    }

    [Theory]
    [InlineData("\"vision\": null, \"projector\": { \"kind\": \"mlp2x_gelu\" },", "'vision' is null")]
    [InlineData("\"projector\": { \"kind\": \"mlp2x_gelu\" },", "'vision' is absent")]
    public void AProjectorWithoutATowerIsMoe022(string keys, string expected)
    {
        var result = SpecParser.Parse("t.json", WithoutVision(keys));
        Assert.Null(result.Variant);
        var diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("MOE022", diagnostic.DescriptorId);
        Assert.Contains(expected, diagnostic.ToDiagnostic().GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    [Fact]
    public void ATowerWithANullProjectorIsMoe022()
    {
        var result = SpecParser.Parse("t.json", Minimal.Replace("\"tokenizer\"", "\"projector\": null,\n  \"tokenizer\"", StringComparison.Ordinal));
        Assert.Null(result.Variant);
        var diagnostic = Assert.Single(result.Diagnostics);
        Assert.Equal("MOE022", diagnostic.DescriptorId);
        Assert.Contains("'projector' is null but the spec has a vision tower", diagnostic.ToDiagnostic().GetMessage(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
    }

    [Fact]
    public void VisionOfTheWrongTypeIsMoe004()
    {
        var result = SpecParser.Parse("t.json", WithoutVision("\"vision\": \"clip\","));
        Assert.Null(result.Variant);
        Assert.Equal("MOE004", Assert.Single(result.Diagnostics).DescriptorId);
    }
}
