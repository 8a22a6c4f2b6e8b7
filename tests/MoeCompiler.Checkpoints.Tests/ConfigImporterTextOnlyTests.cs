using System.Text.Json.Nodes;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Tooling;

namespace MoeCompiler.Checkpoints.Tests;

/// <summary>A config.json without mm_* keys describes a plain LLM: the importer writes a text-only spec ("vision" and
/// "projector" null), which the generator accepts.</summary>
public class ConfigImporterTextOnlyTests
{
    private static JsonObject Import(string json, string? path = null) => JsonNode.Parse(ConfigImporter.ImportSpec(json, null, path))!.AsObject();

    [Fact]
    public void Plain_Mixtral_instruct_config_gives_a_text_only_mistral_instruct_spec()
    {
        var spec = JsonNode.Parse(ConfigImporter.ImportSpecFromFolder(Fixtures.Path_("configs", "mixtral-8x7b-instruct-v0.1.json")))!.AsObject();
        Assert.Null(spec["vision"]);
        Assert.True(spec.ContainsKey("vision"));
        Assert.Null(spec["projector"]);
        Assert.True(spec.ContainsKey("projector"));
        Assert.Equal("mistral_instruct", spec["prompt"]!["template"]!.GetValue<string>());
        var llm = spec["llm"]!;
        Assert.Equal(("mixtral", 4096, 32, 8, 14336), (llm["family"]!.GetValue<string>(), llm["hiddenSize"]!.GetValue<int>(),
            llm["layers"]!.GetValue<int>(), llm["kvHeads"]!.GetValue<int>(), llm["ffnSize"]!.GetValue<int>()));
        var moe = spec["moe"]!;
        Assert.Equal((8, 2, "all", "mixtral"), (moe["experts"]!.GetValue<int>(), moe["topK"]!.GetValue<int>(),
            moe["placement"]!["kind"]!.GetValue<string>(), moe["routing"]!.GetValue<string>()));
        Assert.Equal(1, spec["tokenizer"]!["bos"]!.GetValue<int>());
    }

    [Theory]
    [InlineData("""{ "model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "intermediate_size": 96 }""", "mixtral", "plain")]
    [InlineData("""{ "model_type": "mistral", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 512, "intermediate_size": 96, "_name_or_path": "mistralai/Mistral-7B-Instruct-v0.2" }""", "mistral", "mistral_instruct")]
    [InlineData("""{ "model_type": "qwen", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 151936, "intermediate_size": 192 }""", "qwen", "qwen")]
    public void Configs_without_mm_keys_give_text_only_specs(string config, string family, string template)
    {
        var spec = Import(config);
        Assert.Equal(family, spec["llm"]!["family"]!.GetValue<string>());
        Assert.True(spec.ContainsKey("vision") && spec["vision"] is null);
        Assert.True(spec.ContainsKey("projector") && spec["projector"] is null);
        Assert.Equal(template, spec["prompt"]!["template"]!.GetValue<string>());
    }

    [Fact]
    public void An_instruct_model_folder_name_also_picks_the_instruct_template()
    {
        const string config = """{ "model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 512, "intermediate_size": 96 }""";
        var spec = Import(config, "/models/Mixtral-8x7B-Instruct-v0.1/config.json");
        Assert.Equal("mistral_instruct", spec["prompt"]!["template"]!.GetValue<string>());
    }

    [Fact]
    public void A_text_only_config_matches_a_text_only_variant_and_not_a_vision_one()
    {
        using var folder = new TempFolder();
        File.WriteAllText(Path.Combine(folder.Path, "config.json"), File.ReadAllText(Fixtures.Path_("configs", "mixtral-8x7b-instruct-v0.1.json")));
        var textOnly = Mixtral(visionTower: "none");
        Assert.Empty(HuggingFaceConfig.FindMismatches(folder.Path, textOnly));
        var problems = HuggingFaceConfig.FindMismatches(folder.Path, Mixtral(visionTower: "clip"));
        Assert.Equal("vision tower: config.json says none, variant M has clip", Assert.Single(problems));
    }

    private static ModelDescription Mixtral(string visionTower) => new()
    {
        Name = "M", DisplayName = "M", LlmFamily = "mixtral", VocabSize = 32000, TokenizerSize = 32000, HiddenSize = 4096, Layers = 32,
        Heads = 32, KvHeads = 8, HeadDim = 128, MaxPositions = 32768, MoeLayers = Enumerable.Range(0, 32).ToArray(), Experts = 8, TopK = 2,
        TokenizerKind = "sentencepiece", EosIds = [2], BosId = 1, PromptTemplate = "mistral_instruct", VisionTower = visionTower,
        ImageSize = visionTower == "none" ? 0 : 336, ImageTokens = 0, ImageMean = [], ImageStd = [], VisionScales = [],
        TotalParameters = 1, ActivatedParameters = 1,
    };
}
