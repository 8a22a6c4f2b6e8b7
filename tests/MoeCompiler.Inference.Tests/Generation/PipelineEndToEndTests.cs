using MoeCompiler.Imaging;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tokenizers;

namespace MoeCompiler.Inference.Tests.Generation;

/// <summary>
/// The whole pipeline on a real generated variant: TinyPhiChat (Phi-2 structure, the real GPT-2 vocabulary, a CLIP
/// tower, an MoE layer) with seeded random weights, the shipped GPT-2 tokenizer and a PNG file.
/// </summary>
public sealed class PipelineEndToEndTests(PipelineEndToEndTests.Fixture fixture) : IClassFixture<PipelineEndToEndTests.Fixture>
{
    /// <summary>Model, pipeline (tokenizer load ~1 s) and image file, shared by the tests of this class.</summary>
    public sealed class Fixture : IDisposable
    {
        private readonly string _folder = Path.Combine(Path.GetTempPath(), "moe-e2e-tests-" + Guid.NewGuid().ToString("N"));

        public Fixture()
        {
            Directory.CreateDirectory(_folder);
            Image = Path.Combine(_folder, "gradient.png");
            var pixels = new byte[40 * 30 * 3];
            for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(i * 7 % 251);
            File.WriteAllBytes(Image, PngEncoder.Encode(new RgbImage(40, 30, pixels)));
            Model = new TinyPhiChat(RandomWeights(TinyPhiChat.Manifest, seed: 11), CpuBackend.Shared);
            Pipeline = new VisionLanguagePipeline(Model, CpuBackend.Shared);
        }

        public TinyPhiChat Model { get; }
        public VisionLanguagePipeline Pipeline { get; }
        public string Image { get; }

        public void Dispose()
        {
            Model.Dispose();
            Directory.Delete(_folder, recursive: true);
        }
    }

    private readonly TinyPhiChat _model = fixture.Model;
    private readonly VisionLanguagePipeline _pipeline = fixture.Pipeline;
    private readonly string _image = fixture.Image;

    [Fact]
    public void Ask_RunsTemplateTokenizerImageAndGenerationTogether()
    {
        var streamed = new List<string>();
        var options = new AskOptions { Generation = new GenerationOptions { MaxNewTokens = 12 } };
        var answer = _pipeline.Ask([_image], "What is in the picture?", options, streamed.Add);

        Assert.Equal(PromptTemplates.Build("phi", [], "What is in the picture?"), answer.Prompt);
        Assert.EndsWith(" USER: <image>\nWhat is in the picture? ASSISTANT:", answer.Prompt);
        Assert.Single(answer.PromptIds, id => id == ImagePromptTokenizer.ImageTokenId);
        var d = _model.Description;
        Assert.Equal(d.ImageTokens, answer.Timings.ImageTokens);
        Assert.Equal(answer.PromptIds.Length - 1 + d.ImageTokens, answer.Timings.PromptTokens);
        Assert.InRange(answer.TokenIds.Length, 1, 12);
        Assert.All(answer.TokenIds, id => Assert.InRange(id, 0, d.TokenizerSize - 1));
        if (answer.StopReason != StopReason.StopString)
            Assert.Equal(_pipeline.Tokenizer.Decode(answer.TokenIds), answer.Text);
        Assert.Equal(answer.Text, string.Concat(streamed));

        // Routing statistics of the MoE layer: the image rows and the text rows of the prefill plus one row per
        // decode step, every kept assignment counted once per chosen expert.
        var load = answer.Routing.Find("llm", 0) ?? throw new InvalidOperationException("no routing statistics for llm layer 0");
        Assert.Equal(d.ImageTokens, load.ImageTokens);
        Assert.Equal(answer.PromptIds.Length - 1 + answer.Timings.DecodeSteps, load.TextTokens);
        Assert.Equal(2 * (load.TextTokens + load.ImageTokens), load.TextAssignments.Sum() + load.ImageAssignments.Sum()
            + load.DroppedTextAssignments + load.DroppedImageAssignments);
        Assert.Equal(1.0, load.AllShare.Sum(), 1e-12);
    }

    [Fact]
    public void Ask_IsDeterministic_GreedyAndSeededSampling()
    {
        var greedy = new AskOptions { Generation = new GenerationOptions { MaxNewTokens = 6, StopOnEos = false, StopStrings = [] } };
        Assert.Equal(_pipeline.Ask([_image], "Describe.", greedy).TokenIds, _pipeline.Ask([_image], "Describe.", greedy).TokenIds);

        var sampled = new AskOptions
        {
            Generation = new GenerationOptions { MaxNewTokens = 6, Sampling = new SamplingOptions { Temperature = 0.8f, TopP = 0.9f, TopK = 40, RepetitionPenalty = 1.1f, Seed = 5 } },
        };
        Assert.Equal(_pipeline.Ask([_image], "Describe.", sampled).TokenIds, _pipeline.Ask([_image], "Describe.", sampled).TokenIds);
    }

    [Fact]
    public async Task StreamingCancellation_StopsTheAnswer()
    {
        using var cts = new CancellationTokenSource();
        var options = new AskOptions { Generation = new GenerationOptions { MaxNewTokens = 500, StopOnEos = false } };
        int pieces = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            _pipeline.AskAsync(_image, "Go on.", options, _ => { if (++pieces == 2) cts.Cancel(); }, cts.Token));
        Assert.InRange(pieces, 2, 3);
    }

    /// <summary>Seeded random tensors for every manifest entry: norm weights near 1, small biases, fan-in scaled
    /// matrices (a SplitMix64 + Box–Muller stream, so the values do not depend on the .NET version).</summary>
    private static BoundWeights RandomWeights(WeightManifest manifest, ulong seed)
    {
        ulong state = seed;
        double Uniform()
        {
            ulong z = state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return ((z ^ (z >> 31)) >> 11) * (1.0 / (1UL << 53)) + 1e-300;
        }
        double Normal() => Math.Sqrt(-2 * Math.Log(Uniform())) * Math.Cos(2 * Math.PI * Uniform());

        var tensors = new Dictionary<string, Tensor>();
        foreach (var entry in manifest.Entries)
        {
            var t = Tensor.Allocate(DType.F32, entry.Shape);
            var values = t.AsFloats();
            bool isBias = entry.Key.EndsWith(".bias", StringComparison.Ordinal);
            long fanIn = entry.Shape.Length >= 2 ? entry.Shape.Skip(1).Aggregate(1L, (a, b) => a * b) : 1;
            (double mean, double std) = entry.Role switch
            {
                WeightRole.Norm when !isBias => (1.0, 0.1),
                WeightRole.Embedding => (0.0, 1.0),
                _ when isBias || entry.Shape.Length < 2 => (0.0, 0.02),
                WeightRole.Router => (0.0, 2.0 / Math.Sqrt(fanIn)),
                _ => (0.0, 1.0 / Math.Sqrt(fanIn)),
            };
            for (int i = 0; i < values.Length; i++) values[i] = (float)(mean + std * Normal());
            tensors[entry.Key] = t;
        }
        return BoundWeights.FromTensors(tensors);
    }
}
