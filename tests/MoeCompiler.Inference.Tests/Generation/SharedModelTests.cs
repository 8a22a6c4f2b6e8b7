using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Generation;

/// <summary>
/// One bound model used by several threads at once, each with its own generator, KV cache and routing recorder
/// (issue 19: the MoE layers kept routing scratch in fields, so concurrent sessions mixed each other's expert
/// assignments: wrong tokens and "row 2 outside [0, 1)" from ScatterAddRows). Every thread must get exactly what a
/// single thread gets.
/// </summary>
public sealed class SharedModelTests
{
    private static readonly CpuBackend Backend = CpuBackend.Shared;

    private static GenerationRequest Request(int[] ids, Tensor[]? images = null, int maxNewTokens = 12, Action<ForwardContext>? configure = null) => new()
    {
        PromptIds = ids,
        Images = images ?? [],
        Options = new GenerationOptions { MaxNewTokens = maxNewTokens, StopOnEos = false },
        ConfigureContext = configure,
    };

    private static Tensor Pixels(int size, int seed)
    {
        var rng = new Random(seed);
        var values = new float[3 * size * size];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1);
        return Tensor.FromFloats(values, 3, size, size);
    }

    /// <summary>Prompts of different lengths (so the threads' MoE calls have different row counts), one with an image.</summary>
    private static GenerationRequest[] Requests(ILanguageModel model, int count)
    {
        var d = model.Description;
        var requests = new GenerationRequest[count];
        for (int i = 0; i < count; i++)
        {
            int[] ids = TestWeights.Prompt(2 + 7 * i, d.TokenizerSize - 1, seed: 100 + i);
            requests[i] = i == 1 && d.HasVision
                ? Request([ids[0], PromptSplicer.ImageTokenId, .. ids[1..]], [Pixels(d.ImageSize, i)])
                : Request(ids);
        }
        return requests;
    }

    private static void RunConcurrently(int threads, Action<int> body)
    {
        using var start = new Barrier(threads);
        var errors = new List<Exception>();
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            try
            {
                start.SignalAndWait();
                body(t);
            }
            catch (Exception e)
            {
                lock (errors) errors.Add(e);
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
        if (errors.Count > 0) throw new AggregateException(errors);
    }

    [Fact]
    public void FourThreads_EachItsOwnGenerator_OverOneModel_GiveTheSingleThreadTokens()
    {
        using var model = new TinyQwenMoe(TestWeights.Random(TinyQwenMoe.Manifest, seed: 5), Backend);
        var requests = Requests(model, 4);
        var expected = requests.Select(r => new TextGenerator(model, Backend).Generate(r).TokenIds).ToArray();

        var got = new int[4][][];
        RunConcurrently(4, t =>
        {
            got[t] = new int[5][];
            for (int round = 0; round < 5; round++) got[t][round] = new TextGenerator(model, Backend).Generate(requests[t]).TokenIds;
        });

        for (int t = 0; t < 4; t++)
            for (int round = 0; round < 5; round++)
                Assert.Equal(expected[t], got[t][round]);
    }

    /// <summary>
    /// Many threads on two variants (DeepSpeed and Mixtral routing), generating and running bare forward passes with
    /// routing recorders: tokens, logits and every routing decision equal the single-thread run. Under
    /// scripts/gc-stress.sh this also checks that no tensor is freed while another thread's kernel reads it.
    /// </summary>
    [Fact]
    public void Stress_ManyThreads_GenerationsAndForwardPasses_MatchSingleThread()
    {
        using var qwen = new TinyQwenMoe(TestWeights.Random(TinyQwenMoe.Manifest, seed: 7), Backend);
        using var mixtral = new TinyMixtralText(TestWeights.Random(TinyMixtralText.Manifest, seed: 8), Backend);
        ILanguageModel[] models = [qwen, mixtral];
        var requests = models.Select(m => Requests(m, 4)).ToArray();
        var expectedTokens = requests.Select((rs, m) => rs.Select(r => new TextGenerator(models[m], Backend).Generate(r).TokenIds).ToArray()).ToArray();
        var forwardIds = models.Select((m, i) => TestWeights.Prompt(33, m.Description.TokenizerSize - 1, seed: 200 + i)).ToArray();
        var expectedForward = models.Select((m, i) => ForwardWithRouting(m, forwardIds[i])).ToArray();

        const int threads = 12, rounds = 6;
        RunConcurrently(threads, t =>
        {
            for (int round = 0; round < rounds; round++)
            {
                int m = (t + round) % models.Length;
                if ((t + round) % 3 == 0)
                {
                    var (logits, routing) = ForwardWithRouting(models[m], forwardIds[m]);
                    Assert.Equal(expectedForward[m].Logits, logits);
                    Assert.Equal(expectedForward[m].Routing, routing);
                }
                else
                {
                    int r = (t * 7 + round) % 4;
                    Assert.Equal(expectedTokens[m][r], new TextGenerator(models[m], Backend).Generate(requests[m][r]).TokenIds);
                }
                if (round % 2 == 1) GC.Collect();
            }
        });
    }

    /// <summary>The whole pipeline (template, tokenizer, streaming text, routing statistics) from four threads over
    /// one pipeline: answers, streamed text and routing shares equal the sequential ones.</summary>
    [Fact]
    public void OnePipeline_AskedFromFourThreads_AnswersAsSequentially()
    {
        using var model = new TinyPhiChat(TestWeights.Random(TinyPhiChat.Manifest, seed: 9), Backend);
        var pipeline = new VisionLanguagePipeline(model, Backend);
        string[] questions = ["What is this?", "Name three colours.", "Why is the sky blue?", "Count to five."];
        var options = new AskOptions { Generation = new GenerationOptions { MaxNewTokens = 10, StopOnEos = false } };
        var expected = questions.Select(q => pipeline.Ask([], q, options)).ToArray();

        var got = new (VisionLanguageAnswer Answer, string Streamed)[4];
        RunConcurrently(4, t =>
        {
            var streamed = new System.Text.StringBuilder();
            got[t] = (pipeline.Ask([], questions[t], options, piece => streamed.Append(piece)), "");
            got[t].Streamed = streamed.ToString();
        });
        for (int t = 0; t < 4; t++)
        {
            Assert.Equal(expected[t].TokenIds, got[t].Answer.TokenIds);
            Assert.Equal(expected[t].Text, got[t].Answer.Text);
            Assert.Equal(expected[t].Text, got[t].Streamed);
            Assert.Equal(expected[t].Routing.ToJson(), got[t].Answer.Routing.ToJson());
        }
    }

    /// <summary>Logits of every position and the routing decisions, flattened for comparison.</summary>
    private static (float[] Logits, int[] Routing) ForwardWithRouting(ILanguageModel model, int[] ids)
    {
        var d = model.Description;
        var recorder = new RoutingRecorder();
        var embeddings = model.EmbedTokens(new ForwardContext(Backend), ids);
        var cache = new KvCache(Backend, d.Layers, ids.Length, d.KvHeads * d.HeadDim);
        var context = new ForwardContext(Backend, cache) { IsImageToken = new bool[ids.Length], Routing = recorder };
        float[] logits = model.Forward(context, embeddings).ToFloatArray();
        int[] routing = recorder.Records.SelectMany(r => r.ChosenExperts.Prepend(r.Layer)).ToArray();
        Assert.NotEmpty(routing);
        return (logits, routing);
    }
}
