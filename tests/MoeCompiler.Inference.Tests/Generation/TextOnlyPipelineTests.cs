using MoeCompiler.Imaging;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tokenizers;

namespace MoeCompiler.Inference.Tests.Generation;

/// <summary>The pipeline around a text-only model (an <see cref="ILanguageModel"/> with tower "none"), with the real
/// Mistral tokenizer and the mistral_instruct template.</summary>
public sealed class TextOnlyPipelineTests
{
    private const int IdOffset = 1000;
    private static readonly HostTestBackend Backend = new();

    /// <summary>The counting model seen only as a language model: no EncodeImage reachable, no vision in its description.</summary>
    private sealed class TextOnlyView(FakeCountingModel inner) : ILanguageModel
    {
        public ModelDescription Description { get; } = inner.Description with
        {
            Name = "FakeText", VisionTower = "none", ImageSize = 0, ImageTokens = 0, ImageMean = [], ImageStd = [], VisionScales = [],
        };
        public DType LlmWeightDType => inner.LlmWeightDType;
        public Tensor EmbedTokens(ForwardContext context, ReadOnlySpan<int> ids) => inner.EmbedTokens(context, ids);
        public Tensor Forward(ForwardContext context, Tensor embeddings) => inner.Forward(context, embeddings);
    }

    private static (TextOnlyView View, FakeCountingModel Inner) Model()
    {
        var inner = new FakeCountingModel(eos: [2], vocab: 32000, tokenizerSize: 32000, idOffset: IdOffset, template: "mistral_instruct", bos: 1);
        return (new TextOnlyView(inner), inner);
    }

    [Fact]
    public void WithoutAnImage_TheQuestionAloneIsTemplatedTokenisedAndAnswered()
    {
        var (model, inner) = Model();
        var pipeline = new VisionLanguagePipeline(model, Backend);
        var answer = pipeline.Ask([], "What is <image> in HTML?", new AskOptions { Generation = new GenerationOptions { MaxNewTokens = 5 } });

        Assert.Equal("<s>[INST] What is <image> in HTML? [/INST]", answer.Prompt);
        // One BOS; "<image>" typed by the user is ordinary text to a text-only model, not a placeholder.
        Assert.Equal(1, answer.PromptIds[0]);
        Assert.Single(answer.PromptIds, id => id == 1);
        Assert.DoesNotContain(ImagePromptTokenizer.ImageTokenId, answer.PromptIds);
        Assert.Equal([1, .. pipeline.Tokenizer.Encode("[INST] What is <image> in HTML? [/INST]")], answer.PromptIds);
        Assert.Equal(FakeCountingModel.ExpectedGreedy(answer.PromptIds.Select(id => (float)id), 5, idOffset: IdOffset), answer.TokenIds);
        Assert.Equal(0, answer.Timings.ImageTokens);
        Assert.Equal(0, inner.ImagesEncoded);
        Assert.All(inner.ForwardCalls, c => Assert.DoesNotContain(true, c.IsImage ?? []));
    }

    [Fact]
    public void MultiTurnHistory_UsesTheInstructTurns()
    {
        var (model, _) = Model();
        var pipeline = new VisionLanguagePipeline(model, Backend);
        var answer = pipeline.Ask([], "And 3+3?", new AskOptions { History = [("2+2?", "4")], Generation = new GenerationOptions { MaxNewTokens = 1 } });
        Assert.Equal("<s>[INST] 2+2? [/INST] 4 </s>[INST] And 3+3? [/INST]", answer.Prompt);
    }

    [Fact]
    public void AnImage_IsAClearInputError_BeforeTheFileIsRead()
    {
        var (model, inner) = Model();
        var pipeline = new VisionLanguagePipeline(model, Backend);
        var error = Assert.Throws<ModelInputException>(() => pipeline.Ask(["/nonexistent/picture.png"], "What is it?"));
        Assert.Equal("FakeText is text-only: it takes no image", error.Message);
        Assert.Equal("FakeText is text-only: it takes no image", Assert.Throws<ModelInputException>(() => pipeline.LoadImage("/nonexistent/picture.png")).Message);
        Assert.Empty(inner.ForwardCalls);
    }
}
