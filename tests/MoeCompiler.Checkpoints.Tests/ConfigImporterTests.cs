using System.Text.Json;
using System.Text.Json.Nodes;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Tooling;

namespace MoeCompiler.Checkpoints.Tests;

public class ConfigImporterTests
{
    private static string Config(string name) => Fixtures.Path_("configs", name);

    private static JsonObject Import(string name, string? variant = null) =>
        JsonNode.Parse(ConfigImporter.ImportSpecFromFolder(Config(name), variant))!.AsObject();

    [Fact]
    public void Tiny_config_reproduces_the_tiny_spec_llm_and_moe_sections()
    {
        // The import itself is refused (vocab_size 512 cannot hold arcade100k's EOS 100257, see below); the draft it
        // builds still shows that the architecture sections are read right.
        var path = Config("tiny-stablelm-moe.config.json");
        var spec = JsonNode.Parse(ConfigImporter.Write(HuggingFaceConfig.Read(File.ReadAllText(path), path)))!.AsObject();
        var reference = JsonNode.Parse(File.ReadAllText(Config("tiny-stablelm-moe.spec.json")))!.AsObject();
        Assert.Equal("TinyStableLmMoe", spec["name"]!.GetValue<string>());
        var llm = spec["llm"]!.AsObject();
        var refLlm = reference["llm"]!.AsObject();
        // same keys in the same order as the hand-written spec
        Assert.Equal(refLlm.Select(p => p.Key), llm.Select(p => p.Key));
        foreach (var (key, value) in refLlm)
        {
            if (key == "tokenizerSize") continue; // not in config.json: the importer uses the model's vocabulary
            Assert.True(JsonNode.DeepEquals(Normalise(value), Normalise(llm[key])), $"llm.{key}: {value} vs {llm[key]}");
        }
        Assert.True(JsonNode.DeepEquals(Normalise(reference["moe"]), Normalise(spec["moe"])), $"{reference["moe"]} vs {spec["moe"]}");
        // The toy spec's EOS is a stand-in inside its 500-id tokenizer; the importer gives the family's real one.
        Assert.Equal("arcade100k", spec["tokenizer"]!["kind"]!.GetValue<string>());
        Assert.Equal(100257, spec["tokenizer"]!["eos"]![0]!.GetValue<int>());
        Assert.Equal(499, reference["tokenizer"]!["eos"]![0]!.GetValue<int>());
        Assert.True(JsonNode.DeepEquals(reference["prompt"], spec["prompt"]));
        Assert.True(JsonNode.DeepEquals(reference["checkpoint"], spec["checkpoint"]));
        Assert.Equal(reference.Select(p => p.Key), spec.Select(p => p.Key));
    }

    /// <summary>Numbers compared by value (1e-5 and 1E-05 are the same number).</summary>
    private static JsonNode? Normalise(JsonNode? node) => node switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => JsonValue.Create(v.GetValue<double>()),
        JsonObject o => new JsonObject(o.Select(p => KeyValuePair.Create(p.Key, Normalise(p.Value)))),
        JsonArray a => new JsonArray(a.Select(Normalise).ToArray()),
        _ => node?.DeepClone(),
    };

    [Fact]
    public void Qwen_config_halves_the_ffn_and_uses_qwen_facts()
    {
        var spec = Import("moe-llava-qwen-1.8b-4e.json");
        var llm = spec["llm"]!;
        Assert.Equal("qwen", llm["family"]!.GetValue<string>());
        Assert.Equal(5504, llm["ffnSize"]!.GetValue<int>());
        Assert.Equal("qwen-swiglu", llm["ffnKind"]!.GetValue<string>());
        Assert.Equal(16, llm["kvHeads"]!.GetValue<int>());
        Assert.Equal(128, llm["headDim"]!.GetValue<int>());
        Assert.Equal(1e-6, llm["normEps"]!.GetValue<double>());
        Assert.Equal(8192, llm["maxPositions"]!.GetValue<int>());
        Assert.Equal("qwen", spec["tokenizer"]!["kind"]!.GetValue<string>());
        Assert.Equal(151851, llm["tokenizerSize"]!.GetValue<int>());
        Assert.Equal("interval", spec["moe"]!["placement"]!["kind"]!.GetValue<string>());
        Assert.Equal(2, spec["moe"]!["placement"]!["step"]!.GetValue<int>());
        Assert.Equal(1.0, spec["moe"]!["capacityFactor"]!.GetValue<double>()); // the released config's training value
        // The released config names the training folder, not the hub repository.
        Assert.Equal("Llavaqwen2bOther", spec["name"]!.GetValue<string>());
    }

    [Fact]
    public void Phi_siglip_config()
    {
        var spec = Import("moe-llava-phi2-2.7b-4e-384.json", "Phi2Siglip");
        Assert.Equal("Phi2Siglip", spec["name"]!.GetValue<string>());
        var llm = spec["llm"]!;
        Assert.True(llm["parallelResidual"]!.GetValue<bool>());
        Assert.True(llm["mlpBias"]!.GetValue<bool>());
        Assert.False(llm["lmHeadBias"]!.GetValue<bool>());
        Assert.Equal(0.4, llm["rotaryFraction"]!.GetValue<double>());
        Assert.Equal("gelu-tanh", llm["ffnKind"]!.GetValue<string>());
        var vision = spec["vision"]!;
        Assert.Equal("siglip", vision["tower"]!.GetValue<string>());
        Assert.Equal(384, vision["imageSize"]!.GetValue<int>());
        Assert.Equal(1152, vision["hiddenSize"]!.GetValue<int>());
        Assert.Equal(27, vision["layers"]!.GetValue<int>());
        Assert.Equal(50256, spec["tokenizer"]!["eos"]![0]!.GetValue<int>());
        Assert.True(spec["tokenizer"]!["bos"] is null); // config.json's bos_token_id is null, and Phi-2 adds none
        Assert.Equal(50295, llm["tokenizerSize"]!.GetValue<int>());
    }

    [Theory]
    [InlineData("moe_llava_phi")]
    [InlineData("llava_phi")]
    [InlineData("phi")]
    [InlineData("phi-msft")]
    public void Phi_configs_get_the_phi2_tokenizer_with_its_whitespace_tokens(string modelType)
    {
        // "gpt2" would lack Phi-2's 38 whitespace added tokens and split runs of spaces unlike the reference.
        var spec = JsonNode.Parse(ConfigImporter.ImportSpec($$"""
            {"model_type": "{{modelType}}", "vocab_size": 51200, "hidden_size": 2560, "intermediate_size": 10240,
             "num_hidden_layers": 32, "num_attention_heads": 32}
            """))!;
        Assert.Equal("phi2", spec["tokenizer"]!["kind"]!.GetValue<string>());
        Assert.Equal("phi", spec["prompt"]!["template"]!.GetValue<string>());
    }

    [Theory]
    // A toy config: the family's EOS lies far outside its 512-row embedding table.
    [InlineData("tiny-stablelm-moe.config.json", null, "the end-of-sequence id 100257 is outside the vocabulary of 512 ids ('vocab_size')")]
    // OpenChat's <|end_of_turn|> is 32000: a Mistral vocabulary of 32000 rows has no row for it.
    [InlineData(null, """{"model_type": "moe_llava_mistral", "vocab_size": 32000, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4}""",
        "the end-of-sequence id 32000 is outside the vocabulary of 32000 ids ('vocab_size')")]
    [InlineData(null, """{"model_type": "moe_llava_qwen", "vocab_size": 151000, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4}""",
        "the end-of-sequence id 151643 is outside the vocabulary of 151000 ids ('vocab_size')")]
    [InlineData(null, """{"model_type": "llava_mistral", "vocab_size": 1, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "mm_vision_tower": "openai/clip-vit-large-patch14-336"}""",
        "the BOS id 1 is outside the vocabulary of 1 ids ('vocab_size'); the end-of-sequence id 2 is outside the vocabulary of 1 ids ('vocab_size')")]
    public void Token_ids_outside_the_vocabulary_are_refused_at_import_naming_the_file(string? fixture, string? inline, string problem)
    {
        using var folder = new TempFolder();
        string path = Path.Combine(folder.Path, "config.json");
        File.WriteAllText(path, fixture is null ? inline : File.ReadAllText(Config(fixture)));
        var e = Assert.Throws<CheckpointException>(() => ConfigImporter.ImportSpecFromFolder(folder.Path));
        Assert.Equal(path, e.FilePath);
        Assert.StartsWith(path + ": config.json cannot be imported: the ", e.Message);
        Assert.EndsWith("does not fit its vocabulary: " + problem, e.Message);
        // The check that refuses the import leaves checking a folder against a compiled variant alone.
        Assert.NotNull(HuggingFaceConfig.Read(File.ReadAllText(path), path));
    }

    [Fact]
    public void CuMo_mixtral_config()
    {
        var spec = Import("cumo-mixtral-8x7b.json");
        Assert.Equal("mixtral", spec["llm"]!["family"]!.GetValue<string>());
        Assert.Equal(8, spec["llm"]!["kvHeads"]!.GetValue<int>());
        Assert.Equal(1e6, spec["llm"]!["ropeTheta"]!.GetValue<double>());
        var moe = spec["moe"]!;
        Assert.Equal(8, moe["experts"]!.GetValue<int>());
        Assert.Equal("all", moe["placement"]!["kind"]!.GetValue<string>());
        Assert.Equal("mixtral", moe["routing"]!.GetValue<string>());
        Assert.Equal(4, spec["vision"]!["moe"]!["experts"]!.GetValue<int>());
        Assert.Equal(new[] { 1, 3 }, spec["vision"]!["scales"]!.AsArray().Select(n => n!.GetValue<int>()));
        Assert.Equal(2, spec["projector"]!["moe"]!["topK"]!.GetValue<int>());
        Assert.Equal("cumo", spec["checkpoint"]!["layout"]!.GetValue<string>());
        Assert.Equal("mistral_instruct_system", spec["prompt"]!["template"]!.GetValue<string>());
    }

    [Fact]
    public void Older_key_spellings_are_understood()
    {
        // stablelm_epoch (norm_eps, rope_pct) and phi-msft (n_embd, n_layer, n_head, rotary_dim, n_positions)
        var stablelm = JsonNode.Parse(ConfigImporter.ImportSpec("""
            {"model_type": "stablelm_epoch", "vocab_size": 100352, "hidden_size": 2048, "intermediate_size": 5632,
             "num_hidden_layers": 24, "num_attention_heads": 32, "norm_eps": 1e-06, "rope_pct": 0.5}
            """))!["llm"]!;
        Assert.Equal(1e-6, stablelm["normEps"]!.GetValue<double>());
        Assert.Equal(0.5, stablelm["rotaryFraction"]!.GetValue<double>());
        var phi = JsonNode.Parse(ConfigImporter.ImportSpec("""
            {"model_type": "phi-msft", "vocab_size": 51200, "n_embd": 2560, "n_inner": null, "n_layer": 32,
             "n_head": 32, "rotary_dim": 32, "n_positions": 2048, "layer_norm_epsilon": 1e-05}
            """))!["llm"]!;
        Assert.Equal(2560, phi["hiddenSize"]!.GetValue<int>());
        Assert.Equal(32, phi["layers"]!.GetValue<int>());
        Assert.Equal(10240, phi["ffnSize"]!.GetValue<int>());
        Assert.Equal(0.4, phi["rotaryFraction"]!.GetValue<double>());
        Assert.Equal(2048, phi["maxPositions"]!.GetValue<int>());
    }

    [Fact]
    public void Bad_configs_give_clear_errors()
    {
        Assert.Contains("model_type 'bert'", Assert.Throws<CheckpointException>(() => ConfigImporter.ImportSpec("{\"model_type\": \"bert\"}")).Message);
        Assert.Contains("not valid JSON", Assert.Throws<CheckpointException>(() => ConfigImporter.ImportSpec("{\"model_type\": ")).Message);
        Assert.Contains("no 'hidden_size'", Assert.Throws<CheckpointException>(() => ConfigImporter.ImportSpec("{\"model_type\": \"moe_llava_qwen\"}")).Message);
        Assert.Contains("not a valid variant name", Assert.Throws<CheckpointException>(() => ConfigImporter.ImportSpecFromFolder(Config("moe-llava-qwen-1.8b-4e.json"), "1bad name")).Message);
        var badLayers = File.ReadAllText(Config("tiny-stablelm-moe.config.json")).Replace("[0, 2]", "[0, 9]");
        Assert.Contains("moe_layers_idx", Assert.Throws<CheckpointException>(() => ConfigImporter.ImportSpec(badLayers)).Message);
    }

    private static ModelDescription TinyStableLm(int layers = 4, int[]? moeLayers = null) => new()
    {
        Name = "TinyStableLmMoe", DisplayName = "t", LlmFamily = "stablelm", VocabSize = 512, TokenizerSize = 500, HiddenSize = 64,
        Layers = layers, Heads = 4, KvHeads = 4, HeadDim = 16, MaxPositions = 4096, MoeLayers = moeLayers ?? new[] { 0, 2 }, Experts = 4,
        TopK = 2, TokenizerKind = "arcade100k", EosIds = new[] { 499 }, PromptTemplate = "stablelm", VisionTower = "clip",
        ImageSize = 336, ImageTokens = 576, ImageMean = new float[3], ImageStd = new float[3], VisionScales = new[] { 1 },
        TotalParameters = 1, ActivatedParameters = 1,
    };

    [Fact]
    public void Mismatches_between_config_and_variant_are_listed_before_loading()
    {
        Assert.Empty(HuggingFaceConfig.FindMismatches(Config("tiny-stablelm-moe.config.json"), TinyStableLm()));
        var problems = HuggingFaceConfig.FindMismatches(Config("tiny-stablelm-moe.config.json"), TinyStableLm(layers: 6, moeLayers: new[] { 0, 2, 4 }));
        Assert.Equal(2, problems.Count);
        Assert.Contains(problems, p => p.StartsWith("layers: config.json says 4, variant TinyStableLmMoe has 6"));
        Assert.Contains(problems, p => p.StartsWith("MoE layers: config.json says 0,2"));
        var ex = Assert.Throws<CheckpointException>(() => HuggingFaceConfig.EnsureMatches(Config("moe-llava-qwen-1.8b-4e.json"), TinyStableLm()));
        Assert.Contains("LLM family: config.json says qwen", ex.Message);
        Assert.Contains("hidden size: config.json says 2048", ex.Message);
        using var empty = new TempFolder();
        HuggingFaceConfig.EnsureMatches(empty.Path, TinyStableLm()); // no config.json: nothing to compare
        Assert.Contains("cannot read config.json", Assert.Throws<CheckpointException>(() => HuggingFaceConfig.EnsureMatches(empty.Path, TinyStableLm(), requireConfig: true)).Message);
    }
}
