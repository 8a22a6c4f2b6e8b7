using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Generation;

/// <summary>
/// Batched decode: sequences stepped together over one model give exactly the tokens they give alone (the decode
/// rows use the one-row arithmetic and are routed per sequence), for f32 and bf16 weights; join/leave, chunked
/// prefill, cancellation, a full queue, bad requests and disposal.
/// </summary>
public sealed class GenerationSchedulerTests
{
    private static readonly CpuBackend Backend = CpuBackend.Shared;

    private static GenerationRequest Request(int[] ids, int maxNewTokens = 10, SamplingOptions? sampling = null, Tensor[]? images = null) => new()
    {
        PromptIds = ids,
        Images = images ?? [],
        Options = new GenerationOptions { MaxNewTokens = maxNewTokens, StopOnEos = false, Sampling = sampling ?? SamplingOptions.Greedy },
    };

    private static GenerationRequest[] Prompts(ILanguageModel model, int count, int maxNewTokens = 10, int longest = 40)
    {
        int limit = model.Description.TokenizerSize - 1;
        return Enumerable.Range(0, count)
            .Select(i => Request(TestWeights.Prompt(1 + (i * 13) % longest, limit, seed: 300 + i), maxNewTokens + i % 3,
                i % 2 == 1 ? new SamplingOptions { Temperature = 0.8f, TopP = 0.9f, Seed = (ulong)(i + 1) } : null))
            .ToArray();
    }

    private static GenerationResult[] RunTogether(GenerationScheduler scheduler, GenerationRequest[] requests)
    {
        var tasks = requests.Select(r => scheduler.GenerateAsync(r)).ToArray();
        Assert.True(Task.WaitAll(tasks, TimeSpan.FromMinutes(2)), "the scheduler did not finish");
        return tasks.Select(t => t.Result).ToArray();
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    public void EightSequencesTogether_GiveTheirTokensAlone_AndEqualGenerate(DType weights)
    {
        using var model = new TinyQwenMoe(TestWeights.Random(TinyQwenMoe.Manifest, seed: 21, weights), Backend);
        var requests = Prompts(model, 8);
        var alone = requests.Select(r => new TextGenerator(model, Backend).Generate(r)).ToArray();

        using var scheduler = new GenerationScheduler(model, Backend, new SchedulerOptions { MaxConcurrentSequences = 8, PrefillChunkTokens = 64 });
        var together = RunTogether(scheduler, requests);

        for (int i = 0; i < requests.Length; i++)
        {
            Assert.Equal(alone[i].TokenIds, together[i].TokenIds);
            Assert.Equal(alone[i].StopReason, together[i].StopReason);
            Assert.Equal(alone[i].Timings.DecodeSteps, together[i].Timings.DecodeSteps);
        }
        var (steps, rows, _) = scheduler.DecodeStatistics;
        Assert.True(rows > steps, $"no decode step carried more than one sequence ({rows} rows in {steps} steps)");
    }

    [Fact]
    public void MixtralRouting_WithImagesAndMoreSequencesThanSlots_JoinAndLeave()
    {
        using var model = new TinyCuMoMixtral(TestWeights.Random(TinyCuMoMixtral.Manifest, seed: 22), Backend);
        var d = model.Description;
        var requests = Prompts(model, 7, maxNewTokens: 6).ToList();
        var pixels = Tensor.FromFloats(Enumerable.Range(0, 3 * d.ImageSize * d.ImageSize).Select(i => (i % 17) / 17f - 0.5f).ToArray(), 3, d.ImageSize, d.ImageSize);
        requests.Add(Request([1, PromptSplicer.ImageTokenId, 5, 6], 8, images: [pixels]));
        var alone = requests.Select(r => new TextGenerator(model, Backend).Generate(r).TokenIds).ToArray();

        using var scheduler = new GenerationScheduler(model, Backend, new SchedulerOptions { MaxConcurrentSequences = 3, PrefillChunkTokens = 0 });
        var together = RunTogether(scheduler, requests.ToArray());
        for (int i = 0; i < requests.Count; i++) Assert.Equal(alone[i], together[i].TokenIds);
    }

    [Fact]
    public void ChunkedPrefill_OfALongPrompt_IsTheSameTogetherAsAlone_AndRoutesEveryPromptRow()
    {
        using var model = new TinyQwenMoe(TestWeights.Random(TinyQwenMoe.Manifest, seed: 23), Backend);
        var options = new SchedulerOptions { MaxConcurrentSequences = 4, PrefillChunkTokens = 16 };
        int limit = model.Description.TokenizerSize - 1;
        var recorders = new RoutingRecorder[4];
        var requests = Enumerable.Range(0, 4).Select(i =>
        {
            recorders[i] = new RoutingRecorder();
            var recorder = recorders[i];
            return Request(TestWeights.Prompt(i == 0 ? 70 : 5 + i, limit, seed: 400 + i), 12) with { ConfigureContext = c => c.Routing = recorder };
        }).ToArray();

        int[][] alone;
        using (var single = new GenerationScheduler(model, Backend, options with { MaxConcurrentSequences = 1 }))
            alone = RunTogether(single, requests.Select(r => r with { ConfigureContext = null }).ToArray()).Select(r => r.TokenIds).ToArray();
        using var scheduler = new GenerationScheduler(model, Backend, options);
        var together = RunTogether(scheduler, requests);

        for (int i = 0; i < 4; i++) Assert.Equal(alone[i], together[i].TokenIds);
        // The long prompt ran in ceil(70 / 16) = 5 chunks; every prompt row and decode row was routed once per MoE layer.
        var layer0 = recorders[0].Records.Where(r => r.Site == RoutingSites.Llm && r.Layer == 0).ToList();
        Assert.Equal([16, 16, 16, 16, 6], layer0.Take(5).Select(r => r.Tokens));
        Assert.Equal(70 + together[0].Timings.DecodeSteps, layer0.Sum(r => r.Tokens));
        Assert.Equal(Enumerable.Range(0, layer0.Count).Select(i => i < 5 ? i * 16 : 70 + i - 5), layer0.Select(r => r.StartPosition));
    }

    [Fact]
    public async Task Cancelling_RemovesOnlyThatSequence()
    {
        using var model = new TinyQwenMoe(TestWeights.Random(TinyQwenMoe.Manifest, seed: 24), Backend);
        var requests = Prompts(model, 3, maxNewTokens: 40);
        var alone = requests.Select(r => new TextGenerator(model, Backend).Generate(r).TokenIds).ToArray();
        using var scheduler = new GenerationScheduler(model, Backend);
        using var cts = new CancellationTokenSource();
        int streamed = 0;
        var cancelled = scheduler.GenerateAsync(requests[0], t => { if (++streamed == 3) cts.Cancel(); }, cts.Token);
        var others = requests.Skip(1).Select(r => scheduler.GenerateAsync(r)).ToArray();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.InRange(streamed, 3, 4);
        var results = await Task.WhenAll(others);
        Assert.Equal(alone[1], results[0].TokenIds);
        Assert.Equal(alone[2], results[1].TokenIds);
        Assert.Equal((0, 0), scheduler.Load);
    }

    [Fact]
    public async Task FullQueue_ThrowsSchedulerFullException_AndBadRequestsFailOnlyThemselves()
    {
        using var model = new TinyQwenMoe(TestWeights.Random(TinyQwenMoe.Manifest, seed: 25), Backend);
        using var scheduler = new GenerationScheduler(model, Backend, new SchedulerOptions { MaxConcurrentSequences = 1, MaxQueueLength = 1 });
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        // The first token callback runs on the scheduler's thread: holding it there keeps one sequence active.
        var first = scheduler.GenerateAsync(Request([1, 2, 3], 4), t => { entered.Set(); release.Wait(); });
        Assert.True(entered.Wait(TimeSpan.FromMinutes(1)));
        var queued = scheduler.GenerateAsync(Request([4, 5], 4));
        Assert.True(SpinWait.SpinUntil(() => scheduler.Load.Queued == 1, TimeSpan.FromMinutes(1)), "the second request was not queued");
        var full = Assert.Throws<SchedulerFullException>(() => { _ = scheduler.GenerateAsync(Request([6], 4)); });
        Assert.IsAssignableFrom<InvalidOperationException>(full);
        Assert.Contains("queue is full", full.Message);
        Assert.Equal((1, 1), scheduler.Load);
        release.Set();
        await first;
        await queued;

        var bad = scheduler.GenerateAsync(Request([1, model.Description.VocabSize + 3], 4));
        var good = scheduler.GenerateAsync(Request([7, 8], 4));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => bad);
        Assert.Equal(4, (await good).TokenIds.Length);
        Assert.Throws<ArgumentException>(() => new SchedulerOptions { MaxConcurrentSequences = 0 }.Validate());
    }

    [Fact]
    public async Task Dispose_FailsWaitingRequests_AndRefusesNewOnes()
    {
        using var model = new TinyQwenMoe(TestWeights.Random(TinyQwenMoe.Manifest, seed: 26), Backend);
        var scheduler = new GenerationScheduler(model, Backend, new SchedulerOptions { MaxConcurrentSequences = 1 });
        using var entered = new ManualResetEventSlim();
        using var disposing = new ManualResetEventSlim();
        // The running request holds the scheduler's thread at its first token until Dispose is under way, so the
        // waiting one cannot have been started (and finished) first on a slow machine.
        var running = scheduler.GenerateAsync(Request([1, 2], 50), t =>
        {
            entered.Set();
            disposing.Wait(TimeSpan.FromMinutes(1));
        });
        var waiting = scheduler.GenerateAsync(Request([3, 4], 50));
        Assert.True(entered.Wait(TimeSpan.FromMinutes(1)));
        disposing.Set();
        scheduler.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting);
        Assert.True(running.IsCompleted);
        Assert.Throws<ObjectDisposedException>(() => { _ = scheduler.GenerateAsync(Request([5], 2)); });
    }
}
