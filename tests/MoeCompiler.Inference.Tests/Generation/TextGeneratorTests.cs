using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Generation;

public class TextGeneratorTests
{
    private static readonly HostTestBackend Backend = new();

    private static Tensor Pixels(float first)
    {
        var t = Backend.Allocate(DType.F32, 3, 2, 2);
        t.AsFloats()[0] = first;
        return t;
    }

    private static GenerationRequest Request(int[] ids, Tensor[]? images = null, GenerationOptions? options = null) => new()
    {
        PromptIds = ids,
        Images = images ?? [],
        Options = options ?? new GenerationOptions { MaxNewTokens = 8, StopOnEos = false },
    };

    [Fact]
    public void Greedy_PrefillThenOneForwardPerToken_UsesTheWholeCache()
    {
        var model = new FakeCountingModel();
        var generator = new TextGenerator(model, Backend);
        int[] prompt = [1, 5, 7];
        var result = generator.Generate(Request(prompt));

        Assert.Equal(FakeCountingModel.ExpectedGreedy([1, 5, 7], 8), result.TokenIds);
        Assert.Equal(StopReason.MaxTokens, result.StopReason);
        // One prefill of 3 rows at position 0, then 7 single-row calls at positions 3..9 (the 8th token needs none).
        Assert.Equal((0, 3), (model.ForwardCalls[0].Start, model.ForwardCalls[0].Rows));
        Assert.Equal(Enumerable.Range(3, 7), model.ForwardCalls.Skip(1).Select(c => c.Start));
        Assert.All(model.ForwardCalls.Skip(1), c => Assert.Equal(1, c.Rows));
        Assert.Equal(7, result.Timings.DecodeSteps);
        Assert.Equal(8, result.Timings.GeneratedTokens);
    }

    [Fact]
    public void Images_AreSplicedAtTheirPlaceholders_WithTheImageMask()
    {
        var model = new FakeCountingModel();
        var generator = new TextGenerator(model, Backend);
        int[] prompt = [1, -200, 4, 2, -200, 3];
        var result = generator.Generate(Request(prompt, [Pixels(0.5f), Pixels(2f)]));

        Assert.Equal(2, model.ImagesEncoded);
        var prefill = model.ForwardCalls[0];
        Assert.Equal(1 + 3 + 2 + 3 + 1, prefill.Rows);
        Assert.Equal([false, true, true, true, false, false, true, true, true, false], prefill.IsImage!);
        Assert.Equal(10, result.SequenceLength);
        Assert.Equal(6, result.Timings.ImageTokens);
        float[] column0 = [1, 100.5f, 100.5f, 100.5f, 4, 2, 102, 102, 102, 3];
        Assert.Equal(FakeCountingModel.ExpectedGreedy(column0, 8), result.TokenIds);
        Assert.All(model.ForwardCalls.Skip(1), c => Assert.Equal([false], c.IsImage!));
    }

    [Fact]
    public void PlaceholderCountMustMatchTheImages()
    {
        var generator = new TextGenerator(new FakeCountingModel(), Backend);
        var e = Assert.Throws<ArgumentException>(() => generator.Generate(Request([1, -200, 2], [])));
        Assert.Contains("1 image placeholder(s) but 0 image(s)", e.Message);
        Assert.Throws<ArgumentException>(() => generator.Generate(Request([1, 2], [Pixels(0)])));
        Assert.Throws<ArgumentException>(() => generator.Generate(Request([1, 99])));  // beyond the vocabulary
        Assert.Throws<ArgumentException>(() => generator.Generate(Request([])));
    }

    [Fact]
    public void StopsAtEos_WithoutEmittingIt()
    {
        // From prompt [3] the rule gives 4, 8, 6, 2, 4, 8, ...: make 2 the EOS.
        var model = new FakeCountingModel(eos: [2]);
        var generator = new TextGenerator(model, Backend);
        var result = generator.Generate(Request([3], options: new GenerationOptions { MaxNewTokens = 20 }));
        Assert.Equal(FakeCountingModel.ExpectedGreedy([3], 20, stopAt: 2), result.TokenIds);
        Assert.Equal([4, 8, 6], result.TokenIds);
        Assert.Equal(StopReason.EndOfSequence, result.StopReason);

        var ignoring = generator.Generate(Request([3], options: new GenerationOptions { MaxNewTokens = 5, StopOnEos = false }));
        Assert.Equal([4, 8, 6, 2, 4], ignoring.TokenIds);
        var extraStop = generator.Generate(Request([3], options: new GenerationOptions { MaxNewTokens = 5, StopOnEos = false, StopTokenIds = [8] }));
        Assert.Equal([4], extraStop.TokenIds);
    }

    [Fact]
    public void StopString_EndsGenerationAndIsNotStreamed()
    {
        // Tokens 4, 8, 6, 2 decode as "e", "i", "g", "c".
        var generator = new TextGenerator(new FakeCountingModel(), Backend);
        var streamed = new List<GeneratedToken>();
        var request = Request([3], options: new GenerationOptions { MaxNewTokens = 10, StopOnEos = false, StopStrings = ["gc"] }) with { Decoder = new LetterDecoder() };
        var result = generator.Generate(request, streamed.Add);
        Assert.Equal(StopReason.StopString, result.StopReason);
        Assert.Equal("ei", result.Text);
        Assert.Equal([4, 8, 6, 2], result.TokenIds);
        Assert.Equal("ei", string.Concat(streamed.Select(t => t.Text)));
        Assert.Equal([4, 8, 6, 2], streamed.Select(t => t.Id));
    }

    [Fact]
    public void StopStrings_WithoutADecoder_AreAnError()
    {
        var generator = new TextGenerator(new FakeCountingModel(), Backend);
        Assert.Throws<ArgumentException>(() => generator.Generate(Request([3], options: new GenerationOptions { StopStrings = ["x"] })));
    }

    [Fact]
    public void ContextLimit_StopsGeneration()
    {
        var model = new FakeCountingModel(maxPositions: 6);
        var generator = new TextGenerator(model, Backend);
        var result = generator.Generate(Request([1, 2, 3], options: new GenerationOptions { MaxNewTokens = 10, StopOnEos = false }));
        Assert.Equal(StopReason.ContextFull, result.StopReason);
        Assert.Equal(FakeCountingModel.ExpectedGreedy([1, 2, 3], 10).Take(4), result.TokenIds);
        var e = Assert.Throws<ModelInputException>(() => generator.Generate(Request([1, 2, 3, 4, 5, 6, 7])));
        Assert.Contains("7 positions", e.Message);
    }

    [Fact]
    public void ObserveLogits_SeesEveryRowATokenIsChosenFrom()
    {
        var generator = new TextGenerator(new FakeCountingModel(), Backend);
        var argmaxes = new List<int>();
        var request = Request([2, 2]) with { ObserveLogits = (step, row) => argmaxes.Add(Sampler.ArgMax(row[..FakeCountingModel.TokenizerSize])) };
        var result = generator.Generate(request);
        Assert.Equal(result.TokenIds, argmaxes);
    }

    [Fact]
    public void Cancellation_StopsBetweenForwardCalls()
    {
        var model = new FakeCountingModel();
        var generator = new TextGenerator(model, Backend);
        using var cts = new CancellationTokenSource();
        model.OnForward = calls => { if (calls == 3) cts.Cancel(); };
        Assert.ThrowsAny<OperationCanceledException>(() => generator.Generate(Request([1], options: new GenerationOptions { MaxNewTokens = 50, StopOnEos = false }), null, cts.Token));
        Assert.Equal(3, model.ForwardCalls.Count);
    }

    [Fact]
    public async Task StreamAsync_YieldsTheSameTokensAsGenerate()
    {
        var generator = new TextGenerator(new FakeCountingModel(), Backend);
        var expected = generator.Generate(Request([4, 1]) with { Decoder = new LetterDecoder() });
        var streamed = new List<GeneratedToken>();
        await foreach (var token in generator.StreamAsync(Request([4, 1]) with { Decoder = new LetterDecoder() }))
            streamed.Add(token);
        Assert.Equal(expected.TokenIds, streamed.Select(t => t.Id));
        Assert.Equal(expected.Text, string.Concat(streamed.Select(t => t.Text)));
    }

    [Fact]
    public async Task StreamAsync_LeavingEarlyCancelsTheWorker()
    {
        var model = new FakeCountingModel();
        var generator = new TextGenerator(model, Backend);
        int taken = 0;
        await foreach (var _ in generator.StreamAsync(Request([1], options: new GenerationOptions { MaxNewTokens = 100_000, StopOnEos = false })))
            if (++taken == 2) break;
        Assert.True(model.ForwardCalls.Count < 100_000);
    }

    [Fact]
    public void SampledGeneration_IsReproducibleWithTheSeed()
    {
        var generator = new TextGenerator(new FakeCountingModel(), Backend);
        var sampling = new SamplingOptions { Temperature = 3f, TopK = 5, Seed = 42 };
        var options = new GenerationOptions { MaxNewTokens = 12, StopOnEos = false, Sampling = sampling };
        var a = generator.Generate(Request([1, 2], options: options));
        var b = generator.Generate(Request([1, 2], options: options));
        Assert.Equal(a.TokenIds, b.TokenIds);
        Assert.All(a.TokenIds, id => Assert.InRange(id, 0, FakeCountingModel.TokenizerSize - 1));
    }
}
