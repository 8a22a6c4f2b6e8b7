using System.Text.Json;
using MoeCompiler.Imaging;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace MoeCompiler.Cli.Tests;

/// <summary>Every `moe` command as a user runs it against the tiny variants: exit codes, output, files written.</summary>
public sealed class CommandTests(TinyWeightsFixture weights) : IClassFixture<TinyWeightsFixture>
{
    [Fact]
    public void ListShowsEveryCompiledVariantWithItsCounts()
    {
        var result = CliRunner.Run("list", "--json");
        Assert.Equal(0, result.ExitCode);
        var variants = result.Json().EnumerateArray().ToList();
        Assert.Equal(ModelCatalog.Variants.Count, variants.Count);
        var qwen = variants.Single(v => v.GetProperty("name").GetString() == "TinyQwenMoe");
        var entry = ModelCatalog.Find("TinyQwenMoe")!;
        Assert.Equal(entry.TotalParameters, qwen.GetProperty("totalParameters").GetInt64());
        Assert.Equal(entry.ActivatedParameters, qwen.GetProperty("activatedParameters").GetInt64());
        Assert.Equal("MDMD", qwen.GetProperty("layerMap").GetString());

        var table = CliRunner.Run("list");
        Assert.Equal(0, table.ExitCode);
        foreach (var v in ModelCatalog.Variants) Assert.Contains(v.Name, table.Out);
    }

    [Fact]
    public void InspectListsLayersTensorsAndMemory()
    {
        var result = CliRunner.Run("inspect", "TinyQwenMoe", "--json");
        Assert.Equal(0, result.ExitCode);
        var json = result.Json();
        var kinds = json.GetProperty("layers").EnumerateArray().Select(l => l.GetProperty("kind").GetString()).ToArray();
        Assert.Equal(new[] { "moe", "dense", "moe", "dense" }, kinds);
        var manifest = ModelCatalog.Find("TinyQwenMoe")!.Manifest;
        Assert.Equal(manifest.Entries.Count, json.GetProperty("tensors").GetArrayLength());
        Assert.Equal(manifest.TotalParameters * 4, json.GetProperty("memory").GetProperty("f32").GetInt64());
        Assert.Equal(manifest.TotalParameters * 2, json.GetProperty("memory").GetProperty("bf16").GetInt64());

        var human = CliRunner.Run("inspect", "TinyQwenMoe", "--tensors");
        Assert.Equal(0, human.ExitCode);
        Assert.Contains("transformer.h.0.mlp.deepspeed_moe.gate.wg.weight", human.Out);
    }

    [Fact]
    public void InspectAcceptsTheSpecFileThatDefinesAVariant()
    {
        string spec = Path.Combine(weights.Root, "spec.json");
        File.WriteAllText(spec, "{\"name\": \"TinyPhiMoe\"}");
        var result = CliRunner.Run("inspect", spec, "--json");
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("TinyPhiMoe", result.Json().GetProperty("name").GetString());
    }

    [Fact]
    public void AnUnknownVariantIsABadInputWithASuggestion()
    {
        var result = CliRunner.Run("inspect", "TinyQwenMo");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("unknown variant 'TinyQwenMo'", result.Error);
        Assert.Contains("Did you mean 'TinyQwenMoe'", result.Error);
    }

    [Fact]
    public void CreateWeightsWritesABindableCheckpointAndNeverOverwritesOne()
    {
        string folder = Path.Combine(weights.Root, "created");
        var first = CliRunner.Run("create-weights", "TinyStableLmMoe", "--out", folder, "--dtype", "bf16");
        Assert.Equal(0, first.ExitCode);
        string file = Path.Combine(folder, "model.safetensors");
        var before = File.GetLastWriteTimeUtc(file);
        using (var checkpoint = CheckpointFolder.Open(folder))
        using (var bound = WeightBinder.Bind(ModelCatalog.Find("TinyStableLmMoe")!.Manifest, checkpoint))
            Assert.True(bound.Contains("model.layers.0.mlp.deepspeed_moe.gate.wg.weight"));

        var second = CliRunner.Run("create-weights", "TinyStableLmMoe", "--out", folder);
        Assert.Equal(2, second.ExitCode);
        Assert.Contains("already holds a checkpoint", second.Error);
        Assert.Equal(before, File.GetLastWriteTimeUtc(file));
    }

    [Fact]
    public void CreateWeightsInitHfWritesTheHuggingFaceInit()
    {
        string folder = Path.Combine(weights.Root, "created-hf");
        var result = CliRunner.Run("create-weights", "TinyQwenMoe", "--out", folder, "--init", "hf", "--seed", "3");
        Assert.True(result.ExitCode == 0, result.Error);
        var manifest = ModelCatalog.Find("TinyQwenMoe")!.Manifest;
        using (var checkpoint = CheckpointFolder.Open(folder))
        using (var bound = WeightBinder.Bind(manifest, checkpoint))
        {
            Assert.All(bound["transformer.h.0.attn.c_attn.bias"].ToFloatArray(), v => Assert.Equal(0f, v));
            var entry = manifest.Entries.Single(e => e.Key == "transformer.h.0.attn.c_proj.weight");
            Assert.Equal(RandomCheckpoint.Create(manifest, entry, 3, DType.F32, InitStyle.HuggingFace).ToFloatArray(), bound[entry.Key].ToFloatArray());
        }
        var bad = CliRunner.Run("create-weights", "TinyQwenMoe", "--out", Path.Combine(weights.Root, "created-bad"), "--init", "xavier");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("--init must be random or hf", bad.Error);
    }

    [Fact]
    public void RunAnswersAboutAnImageWithTimingsAndRouting()
    {
        var result = CliRunner.Run("run", "TinyPhiChat", "--weights", weights.PhiWeights, "--image", weights.Picture,
            "--prompt", "What is in this picture?", "--max-tokens", "5", "--json");
        Assert.Equal(0, result.ExitCode);
        var json = result.Json();
        Assert.InRange(json.GetProperty("tokenIds").GetArrayLength(), 1, 5);
        var timings = json.GetProperty("timings");
        Assert.Equal(16, timings.GetProperty("imageTokens").GetInt32());
        Assert.True(timings.GetProperty("prefillSeconds").GetDouble() > 0);
        var routing = json.GetProperty("routing").EnumerateArray().ToList();
        Assert.Single(routing); // TinyPhiChat: MoE on layer 0 only
        double textShare = routing[0].GetProperty("textShare").EnumerateArray().Sum(e => e.GetDouble());
        Assert.Equal(1.0, textShare, 6);
    }

    [Fact]
    public void RunStreamsTheAnswerAndSummarises()
    {
        var result = CliRunner.Run("run", "TinyPhiChat", "-w", weights.PhiWeights, "-i", weights.Picture, "-p", "Hi", "--max-tokens", "3");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("prompt tokens", result.Out);
        Assert.Contains("expert load", result.Out);
        Assert.Contains("tokens/s", result.Out);
    }

    [Fact]
    public void RunIsDeterministicWhenGreedy()
    {
        string[] args = ["run", "TinyPhiChat", "-w", weights.PhiWeights, "-i", weights.Picture, "-p", "Describe it.", "--max-tokens", "6", "--json"];
        var a = CliRunner.Run(args).Json().GetProperty("tokenIds").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var b = CliRunner.Run(args).Json().GetProperty("tokenIds").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(a, b);
        Assert.All(a, id => Assert.InRange(id, 0, ModelCatalog.Find("TinyPhiChat")!.ModelDescription.TokenizerSize - 1));
    }

    [Fact]
    public void RunReportsMissingAndCorruptInputsClearly()
    {
        var missingImage = CliRunner.Run("run", "TinyPhiChat", "-w", weights.PhiWeights, "-i", "nope.png", "-p", "x");
        Assert.Equal(2, missingImage.ExitCode);
        Assert.Contains("image not found: nope.png", missingImage.Error);

        string corrupt = Path.Combine(weights.Root, "corrupt.png");
        var bytes = File.ReadAllBytes(weights.Picture);
        File.WriteAllBytes(corrupt, bytes.AsSpan(0, bytes.Length / 2).ToArray());
        var truncated = CliRunner.Run("run", "TinyPhiChat", "-w", weights.PhiWeights, "-i", corrupt, "-p", "x");
        Assert.Equal(2, truncated.ExitCode);
        Assert.Contains("corrupt.png", truncated.Error);

        var missingWeights = CliRunner.Run("run", "TinyPhiChat", "-w", Path.Combine(weights.Root, "none"), "-i", weights.Picture, "-p", "x");
        Assert.Equal(2, missingWeights.ExitCode);
        Assert.Contains("weights not found", missingWeights.Error);

        var wrongVariant = CliRunner.Run("run", "TinyQwenMoe", "-w", weights.PhiWeights, "-i", weights.Picture, "-p", "x");
        Assert.Equal(2, wrongVariant.ExitCode);
        Assert.Contains("transformer.wte.weight", wrongVariant.Error); // a missing key of the Qwen layout, by name

        var tooSmallVocabulary = CliRunner.Run("run", "TinyQwenMoe", "-w", weights.QwenWeights, "-i", weights.Picture, "-p", "hello there");
        Assert.Equal(2, tooSmallVocabulary.ExitCode);
        Assert.Contains("outside TinyQwenMoe's vocabulary of 512 ids", tooSmallVocabulary.Error);

        var tooLong = CliRunner.Run("run", "TinyPhiChat", "-w", weights.PhiWeights, "-i", weights.Picture, "-p", string.Concat(Enumerable.Repeat("hello ", 2100)));
        Assert.Equal(2, tooLong.ExitCode);
        Assert.Contains("TinyPhiChat handles at most 2048", tooLong.Error);

        var badSyntax = CliRunner.Run("run", "TinyPhiChat", "-w", weights.PhiWeights, "-p", "x", "--dtype", "int4");
        Assert.Equal(2, badSyntax.ExitCode);
        Assert.Contains("--dtype must be f32, bf16, f16, int8 or q4", badSyntax.Error);

        var badOption = CliRunner.Run("run", "TinyPhiChat", "-w", weights.PhiWeights, "-p", "x", "--top-p", "1.5");
        Assert.Equal(2, badOption.ExitCode);
    }

    /// <summary>A copy of the tiny Phi weights with tokenizer files from the shipped vocabularies.</summary>
    private string WeightsWithTokenizer(string name, params (string DataFile, string AsName)[] files)
    {
        string folder = weights.Path_(name);
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(weights.PhiWeights, "model.safetensors"), Path.Combine(folder, "model.safetensors"));
        foreach (var (dataFile, asName) in files)
            File.Copy(Path.Combine(MoeCompiler.Tokenizers.TokenizerLoader.DefaultDataDirectory, dataFile), Path.Combine(folder, asName));
        return folder;
    }

    [Fact]
    public void RunUsesTheCheckpointsTokenizerFilesAndSaysWhich()
    {
        string prompt = "indented:" + new string(' ', 20) + "x";
        var bundled = CliRunner.Run("run", "TinyPhiChat", "-w", weights.PhiWeights, "-i", weights.Picture, "-p", prompt, "--max-tokens", "2");
        Assert.Equal(0, bundled.ExitCode);
        Assert.Contains("tokenizer: bundled gpt2", bundled.Out);

        // Phi-2's own tokenizer.json has whitespace-run tokens the bundled GPT-2 tokenizer lacks: fewer prompt tokens.
        string folder = WeightsWithTokenizer("phi-with-tokenizer", ("phi2-tokenizer.json", "tokenizer.json"));
        string file = Path.Combine(folder, "tokenizer.json");
        var own = CliRunner.Run("run", "TinyPhiChat", "-w", folder, "-i", weights.Picture, "-p", prompt, "--max-tokens", "2", "--json");
        Assert.Equal(0, own.ExitCode);
        Assert.Equal(file, own.Json().GetProperty("tokenizer").GetString());
        var bundledJson = CliRunner.Run("run", "TinyPhiChat", "-w", weights.PhiWeights, "-i", weights.Picture, "-p", prompt, "--max-tokens", "2", "--json");
        Assert.Equal("bundled gpt2", bundledJson.Json().GetProperty("tokenizer").GetString());
        int PromptTokens(CliRunner.Result r) => r.Json().GetProperty("timings").GetProperty("promptTokens").GetInt32();
        Assert.True(PromptTokens(own) < PromptTokens(bundledJson), $"{PromptTokens(own)} vs {PromptTokens(bundledJson)}");

        var human = CliRunner.Run("run", "TinyPhiChat", "-w", folder, "-i", weights.Picture, "-p", "Hi", "--max-tokens", "2");
        Assert.Contains($"tokenizer: {file}", human.Out);
    }

    [Fact]
    public void RunRefusesATokenizerThatDoesNotFitTheVariant()
    {
        // GPT-2's vocab.json + merges.txt has 50257 tokens; TinyPhiChat's spec says 50295 (Phi-2's added tokens).
        string folder = WeightsWithTokenizer("phi-with-gpt2-vocab", ("gpt2-vocab.json", "vocab.json"), ("gpt2-merges.txt", "merges.txt"));
        var result = CliRunner.Run("run", "TinyPhiChat", "-w", folder, "-i", weights.Picture, "-p", "x");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains(Path.Combine(folder, "vocab.json"), result.Error);
        Assert.Contains("has 50257 tokens, but TinyPhiChat's spec says 50295 (tokenizerSize)", result.Error);

        string broken = WeightsWithTokenizer("phi-with-broken-config", ("phi2-tokenizer.json", "tokenizer.json"));
        File.WriteAllText(Path.Combine(broken, "tokenizer_config.json"), "{\"add_bos_token\": \"maybe\"}");
        var badConfig = CliRunner.Run("run", "TinyPhiChat", "-w", broken, "-i", weights.Picture, "-p", "x");
        Assert.Equal(2, badConfig.ExitCode);
        Assert.Contains(Path.Combine(broken, "tokenizer_config.json") + ": ", badConfig.Error);
        Assert.Contains("add_bos_token is not true or false", badConfig.Error);
    }

    [Fact]
    public void RoutingWritesPngAndSvgAndRefusesToOverwrite()
    {
        string basePath = Path.Combine(weights.Root, "routing-out");
        var result = CliRunner.Run("routing", "TinyPhiChat", "-w", weights.PhiWeights, "-i", weights.Picture, "-o", basePath, "--max-tokens", "2");
        Assert.Equal(0, result.ExitCode);
        var png = ImageDecoder.DecodeFile(basePath + ".png");
        Assert.True(png.Width >= 360 && png.Height > 200);
        string svg = File.ReadAllText(basePath + ".svg");
        Assert.StartsWith("<svg", svg);
        Assert.Contains("llm layer 0, image tokens", svg); // TinyPhiChat: MoE on layer 0

        var again = CliRunner.Run("routing", "TinyPhiChat", "-w", weights.PhiWeights, "-i", weights.Picture, "-o", basePath);
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("--force", again.Error);
    }

    [Fact]
    public void ImportConfigTurnsAHuggingFaceConfigIntoASpec()
    {
        string folder = Path.Combine(weights.Root, "hf");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), """
        {
          "model_type": "moe_llava_qwen", "vocab_size": 151936, "hidden_size": 2048, "num_hidden_layers": 24,
          "num_attention_heads": 16, "intermediate_size": 11008, "layer_norm_epsilon": 1e-6, "rotary_emb_base": 10000,
          "rotary_pct": 1.0, "seq_length": 8192, "kv_channels": 128,
          "mm_image_tower": "openai/clip-vit-large-patch14-336", "mm_hidden_size": 1024, "mm_vision_select_layer": -2,
          "mm_vision_select_feature": "patch", "image_projector_type": "mlp2x_gelu", "image_aspect_ratio": "pad",
          "moe": {"moe_enable": true, "num_experts": [4,4,4,4,4,4,4,4,4,4,4,4], "top_k_experts": 2,
                  "moe_layers_idx": [0,2,4,6,8,10,12,14,16,18,20,22], "moe_mode": "sparse", "capacity_factor": 1.5,
                  "eval_capacity_factor": 2.0, "min_capacity": 0, "use_residual": false, "router_aux_loss_coef": 0.01}
        }
        """);
        var printed = CliRunner.Run("import-config", folder, "--name", "MyQwen");
        Assert.Equal(0, printed.ExitCode);
        using var spec = JsonDocument.Parse(printed.Out);
        Assert.Equal("MyQwen", spec.RootElement.GetProperty("name").GetString());
        Assert.Equal("qwen", spec.RootElement.GetProperty("llm").GetProperty("family").GetString());
        Assert.Equal(4, spec.RootElement.GetProperty("moe").GetProperty("experts").GetInt32());

        string target = Path.Combine(weights.Root, "my-qwen.json");
        Assert.Equal(0, CliRunner.Run("import-config", folder, "-o", target).ExitCode);
        Assert.True(File.Exists(target));
        var again = CliRunner.Run("import-config", folder, "-o", target);
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("refusing to overwrite", again.Error);
    }

    [Fact]
    public void UpcycleCopiesTheDenseFfnIntoEveryExpertOfALoadableCheckpoint()
    {
        // A dense checkpoint in the StableLM layout: the MoE variant's tensors with each MoE layer's expert 0
        // renamed back to the dense FFN names and the routers left out.
        var variant = ModelCatalog.Find("TinyStableLmMoe")!;
        string denseFolder = Path.Combine(weights.Root, "dense");
        Directory.CreateDirectory(denseFolder);
        var dense = new List<KeyValuePair<string, MoeCompiler.Runtime.Tensors.Tensor>>();
        foreach (var entry in variant.Manifest.Entries)
        {
            if (entry.Key.Contains(".gate.wg.", StringComparison.Ordinal)) continue;
            const string expertZero = ".mlp.deepspeed_moe.experts.deepspeed_experts.0.";
            if (entry.Key.Contains(".deepspeed_experts.", StringComparison.Ordinal) && !entry.Key.Contains(expertZero, StringComparison.Ordinal)) continue;
            dense.Add(new(entry.Key.Replace(expertZero, ".mlp.", StringComparison.Ordinal), RandomCheckpoint.Create(entry, 3, MoeCompiler.Runtime.Tensors.DType.F32)));
        }
        SafetensorsWriter.Write(Path.Combine(denseFolder, "model.safetensors"), dense);

        string moeFolder = Path.Combine(weights.Root, "upcycled");
        var result = CliRunner.Run("upcycle", "--dense", denseFolder, "--variant", "TinyStableLmMoe", "--out", moeFolder, "--seed", "5");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("routers", result.Out);
        using var folder = CheckpointFolder.Open(moeFolder);
        using var bound = WeightBinder.Bind(variant.Manifest, folder);
        var e0 = bound["model.layers.0.mlp.deepspeed_moe.experts.deepspeed_experts.0.up_proj.weight"].ToFloatArray();
        var e3 = bound["model.layers.0.mlp.deepspeed_moe.experts.deepspeed_experts.3.up_proj.weight"].ToFloatArray();
        Assert.Equal(e0, e3);
    }

    [Fact]
    public void BenchReportsSpeedAgainstTheMachineLimits()
    {
        var result = CliRunner.Run("bench", "TinyQwenMoe", "--weights", weights.QwenWeights, "--tokens", "4", "--prompt-tokens", "8", "--json");
        Assert.Equal(0, result.ExitCode);
        var json = result.Json();
        Assert.True(json.GetProperty("readGBps").GetDouble() > 0);
        Assert.True(json.GetProperty("fmaGflops").GetDouble() > 0);
        Assert.True(json.GetProperty("decodeTokensPerSecond").GetDouble() > 0);
        Assert.True(json.GetProperty("idealDecodeTokensPerSecond").GetDouble() > 0);
    }

    [Fact]
    public void DemoRunsEndToEndAndReusesItsWeights()
    {
        string cache = Path.Combine(weights.Root, "demo-cache");
        var first = CliRunner.Run("demo", "--cache", cache, "--max-tokens", "4");
        Assert.Equal(0, first.ExitCode);
        Assert.Contains("weights   created", first.Out);
        Assert.Contains("answer", first.Out);
        Assert.Contains("expert load", first.Out);
        var second = CliRunner.Run("demo", "--cache", cache, "--max-tokens", "4", "--json");
        Assert.Equal(0, second.ExitCode);
        Assert.Equal("TinyPhiChat", second.Json().GetProperty("variant").GetString());
    }

    [Fact]
    public void ChatKeepsAMultiTurnConversation()
    {
        string input = $"/image {weights.Picture}\nWhat is it?\nAnd the colour?\n/bogus\n/quit\n";
        var result = CliRunner.RunWithInput(input, "chat", "TinyPhiChat", "-w", weights.PhiWeights, "--max-tokens", "3");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("new conversation about picture.png", result.Out);
        Assert.Equal(2, result.Out.Split("assistant> ").Length - 1);
        Assert.Contains("unknown command /bogus", result.Out);
        Assert.Contains("tokenizer: bundled gpt2", result.Out);
    }
}
