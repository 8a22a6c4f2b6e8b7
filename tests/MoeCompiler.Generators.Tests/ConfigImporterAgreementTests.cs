using MoeCompiler.Generators.Model;
using MoeCompiler.Generators.Parsing;
using MoeCompiler.Runtime.Checkpoints;

namespace MoeCompiler.Generators.Tests;

/// <summary>Specs imported from config.json files (the checkpoint side's ConfigImporter) are valid specs for the generator.</summary>
public class ConfigImporterAgreementTests
{
    private static VariantModel Parse(string name, string json)
    {
        var result = SpecParser.Parse(name, json);
        Assert.Empty(result.Diagnostics.Select(d => d.ToDiagnostic().ToString()));
        return result.Variant!;
    }

    private static string Config(string file) => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "TestData", "configs", file));

    [Theory]
    [InlineData("moe-llava-qwen-1.8b-4e.json", "moellava-qwen-4e", false)]
    [InlineData("moe-llava-stablelm-1.6b-4e.json", "moellava-stablelm-4e", false)]
    [InlineData("moe-llava-phi2-2.7b-4e-384.json", "moellava-phi2-4e-384", false)]
    [InlineData("cumo-mixtral-8x7b.json", "cumo-mixtral-8x7b", false)]
    // A plain LLM config: a text-only spec, no tower and no projector.
    [InlineData("mixtral-8x7b-instruct-v0.1.json", "mixtral-8x7b-instruct", false)]
    // A config.json cannot describe the tiny tower (it names the real CLIP-L), so only the LLM is compared.
    [InlineData("tiny-stablelm-moe.config.json", "tiny-stablelm-moe", true)]
    public void ImportedSpecsCompileToTheShippedArchitecture(string config, string shipped, bool llmOnly)
    {
        var imported = Parse("imported.json", ConfigImporter.ImportSpec(Config(config), name: "Imported"));
        string path = Path.Combine(RepoPaths.ModelSpecs, shipped + ".json");
        var expected = Parse(path, File.ReadAllText(path));
        // The same tensors, keys and shapes: the architecture is what the weights must fit.
        var importedPlan = new MoeCompiler.Generators.Emit.WeightPlan(imported);
        var expectedPlan = new MoeCompiler.Generators.Emit.WeightPlan(expected);
        Assert.Equal(
            expectedPlan.Tensors.Where(t => !llmOnly || t.Site == "llm").Select(t => t.Key + " " + string.Join("x", t.Shape)),
            importedPlan.Tensors.Where(t => !llmOnly || t.Site == "llm").Select(t => t.Key + " " + string.Join("x", t.Shape)));
        Assert.Equal(expected.Moe?.Layers, imported.Moe?.Layers);
        Assert.Equal(expected.Llm.RotaryDims, imported.Llm.RotaryDims);
        Assert.Equal(expected.Llm.NormEps, imported.Llm.NormEps);
        Assert.Equal(expected.Llm.RopeTheta, imported.Llm.RopeTheta);
        if (!llmOnly) Assert.Equal((expected.Vision, expected.Projector), (imported.Vision, imported.Projector));
        if (!llmOnly) Assert.Equal(expected.Template, imported.Template);
    }
}
