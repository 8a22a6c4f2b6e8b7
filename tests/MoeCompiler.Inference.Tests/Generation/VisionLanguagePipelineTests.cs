using MoeCompiler.Imaging;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Tokenizers;

namespace MoeCompiler.Inference.Tests.Generation;

/// <summary>The pipeline with the real Mistral tokenizer and image codecs around the fake counting model.</summary>
public sealed class VisionLanguagePipelineTests : IDisposable
{
    private const int IdOffset = 1000; // ordinary word pieces of the Mistral vocabulary
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "moe-pipeline-tests-" + Guid.NewGuid().ToString("N"));
    private static readonly HostTestBackend Backend = new();

    public VisionLanguagePipelineTests() => Directory.CreateDirectory(_folder);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string WritePng(string name, byte gray)
    {
        string path = Path.Combine(_folder, name);
        File.WriteAllBytes(path, PngEncoder.Encode(RgbImage.Filled(4, 4, gray, gray, gray)));
        return path;
    }

    private static FakeCountingModel Model() =>
        new(eos: [2], vocab: 32000, tokenizerSize: 32000, idOffset: IdOffset, template: "mistral_instruct_system", bos: 1);

    [Fact]
    public async Task AskAsync_TemplatesTokenisesSplicesAndStreamsTheAnswer()
    {
        var model = Model();
        var pipeline = new VisionLanguagePipeline(model, Backend);
        string image = WritePng("a.png", 200);
        var streamed = new List<string>();
        var answer = await pipeline.AskAsync(image, "What is it?", new AskOptions { Generation = new GenerationOptions { MaxNewTokens = 6 } }, streamed.Add);

        Assert.StartsWith("<s>[INST] <<SYS>>\n", answer.Prompt);
        Assert.EndsWith("<image>\nWhat is it? [/INST]", answer.Prompt);
        Assert.Equal(1, answer.PromptIds[0]);
        Assert.NotEqual(1, answer.PromptIds[1]);                                  // one BOS, not two
        Assert.Single(answer.PromptIds, id => id == ImagePromptTokenizer.ImageTokenId);

        // The answer follows the model's rule over the spliced prompt: text ids, then 3 image rows whose value is
        // 100 + the first normalised pixel.
        var tokenizer = pipeline.Tokenizer;
        float pixel = (float)(200 * (1.0 / 255.0)); // a uniform square image: no padding, resize keeps the value, mean 0, std 1
        var column0 = answer.PromptIds.SelectMany(id => id == ImagePromptTokenizer.ImageTokenId
            ? Enumerable.Repeat(FakeCountingModel.ImageValue + pixel, FakeCountingModel.ImageRows) : [(float)id]);
        Assert.Equal(FakeCountingModel.ExpectedGreedy(column0, 6, idOffset: IdOffset), answer.TokenIds);
        Assert.Equal(tokenizer.Decode(answer.TokenIds), answer.Text);
        Assert.Equal(answer.Text, string.Concat(streamed));
        Assert.Equal(StopReason.MaxTokens, answer.StopReason);

        // Routing statistics split by modality: the prefill's image rows and text rows, then one text row per decode step.
        var load = Assert.Single(answer.Routing.Layers);
        Assert.Equal(("llm", 0), (load.Site, load.Layer));
        Assert.Equal(FakeCountingModel.ImageRows, load.ImageTokens);
        Assert.Equal(answer.PromptIds.Length - 1 + 5, load.TextTokens);
        Assert.Equal(answer.Timings.PromptTokens, answer.PromptIds.Length - 1 + FakeCountingModel.ImageRows);
    }

    [Fact]
    public void SeveralImages_GetOnePlaceholderEach()
    {
        var model = Model();
        var pipeline = new VisionLanguagePipeline(model, Backend);
        var answer = pipeline.Ask([WritePng("a.png", 10), WritePng("b.png", 250)], "Compare.", new AskOptions { Generation = new GenerationOptions { MaxNewTokens = 2 } });
        Assert.Equal(2, answer.PromptIds.Count(id => id == ImagePromptTokenizer.ImageTokenId));
        Assert.Equal(2, model.ImagesEncoded);
        Assert.Equal(2 * FakeCountingModel.ImageRows, answer.Timings.ImageTokens);
    }

    [Fact]
    public void EosAndTheTemplateSeparator_StopGeneration()
    {
        // With idOffset 0 the rule produces ids 1..10, and id 2 is Mistral's </s>: EOS and the template's stop.
        var model = new FakeCountingModel(eos: [2], vocab: 32000, tokenizerSize: 32000, template: "mistral_instruct_system");
        var pipeline = new VisionLanguagePipeline(model, Backend);
        var answer = pipeline.Ask([WritePng("a.png", 0)], "Hi", new AskOptions { Generation = new GenerationOptions { MaxNewTokens = 64 } });
        Assert.Equal(StopReason.EndOfSequence, answer.StopReason);
        Assert.DoesNotContain(2, answer.TokenIds);
        Assert.True(answer.TokenIds.Length < 64);
    }

    [Fact]
    public void UnreadableImage_IsReportedWithItsFileName()
    {
        var pipeline = new VisionLanguagePipeline(Model(), Backend);
        string bad = Path.Combine(_folder, "broken.png");
        File.WriteAllBytes(bad, [1, 2, 3, 4]);
        var e = Assert.Throws<ImageDecodingException>(() => pipeline.Ask([bad], "?"));
        Assert.Equal(bad, e.FileName);
        var missing = Assert.Throws<ImageDecodingException>(() => pipeline.Ask([Path.Combine(_folder, "nope.png")], "?"));
        Assert.Contains("nope.png", missing.FileName);
    }

    [Fact]
    public async Task Cancellation_IsHonoured()
    {
        var pipeline = new VisionLanguagePipeline(Model(), Backend);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pipeline.AskAsync(WritePng("a.png", 1), "?", null, null, cts.Token));
    }

    [Fact]
    public void ACheckpointsOwnTokenizerFilesChangeThePromptIds()
    {
        // A CuMo-style folder whose tokenizer_config.json asks for the non-legacy slow tokenizer: after the literal
        // "<s>" the prompt continues with "[" (28792) instead of the bundled tokenizer's "▁[" (733).
        string checkpoint = Path.Combine(_folder, "checkpoint");
        Directory.CreateDirectory(checkpoint);
        File.Copy(Path.Combine(TokenizerLoader.DefaultDataDirectory, "mistral-sentencepiece.model"), Path.Combine(checkpoint, "tokenizer.model"));
        File.WriteAllText(Path.Combine(checkpoint, "tokenizer_config.json"), "{\"tokenizer_class\": \"LlamaTokenizer\", \"legacy\": false}");
        var model = Model();
        var chosen = MoeCompiler.Runtime.Checkpoints.CheckpointTokenizer.Load(checkpoint, model.Description);
        var own = new VisionLanguagePipeline(model, Backend, chosen.Tokenizer);
        var bundled = new VisionLanguagePipeline(model, Backend);
        string prompt = own.BuildPrompt(1, "What is it?");
        Assert.Same(chosen.Tokenizer, own.Tokenizer);
        Assert.Equal([1, 28792], own.TokenizePrompt(prompt)[..2]);
        Assert.Equal([1, 733], bundled.TokenizePrompt(prompt)[..2]);
        Assert.Equal(Path.Combine(checkpoint, "tokenizer.model") + " (with tokenizer_config.json)", chosen.Source);
    }
}
