using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Diagnostics;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace MoeCompiler.Inference.Tests.Parity;

/// <summary>
/// int8 and q4 weights (quantised at load, default policy) against the f32 forward, on every tiny variant: one prefill
/// of a random image and 256 seeded random text tokens; top-1 agreement, mean KL, max relative logit error and routing
/// agreement per MoE layer (docs/quantization.md has the numbers, bf16 alongside as a yardstick).
/// The weights are <see cref="RandomCheckpoint"/>'s N(0, 0.02²) initialisation, as in the full-size random checkpoints
/// of benchmarks/ModelBench. Random weights are not trained weights: their next-token distributions are nearly flat
/// (mean KL stays tiny) and the top two logits are often closer than any rounding moves them, so bf16 rounding alone
/// flips up to 0.7 % of top-1 tokens here. Asserted: the KL targets (int8 ≤ 1e-3, q4 ≤ 2e-2) and int8 top-1
/// ≥ 99 % on the decisive positions (<see cref="FidelityMetrics.DecisiveMargin"/>); q4 misses the 95 % top-1
/// target on random weights (recorded in the docs), so its top-1 and routing bounds here are regression guards below
/// the measured values, not the target.
/// </summary>
public class QuantizationFidelityTests(Xunit.Abstractions.ITestOutputHelper output)
{
    public const int TextPositions = 256;

    public static TheoryData<string> Variants() =>
        new(ModelCatalog.Variants.Where(v => v.Name.StartsWith("Tiny", StringComparison.Ordinal)).Select(v => v.Name));

    [Theory]
    [MemberData(nameof(Variants))]
    public void QuantisedForwardStaysCloseToF32(string variant)
    {
        var entry = ModelCatalog.Find(variant)!;
        string folder = Path.Combine(Path.GetTempPath(), "moe-fidelity-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        try
        {
            string checkpoint = Path.Combine(folder, "model.safetensors");
            RandomCheckpoint.Write(entry.Manifest, checkpoint, seed: 16);
            var reference = Run(entry, checkpoint, null);
            foreach (var dtype in new[] { DType.BF16, DType.I8, DType.Q4 })
            {
                var run = Run(entry, checkpoint, dtype);
                var metrics = FidelityMetrics.Compare(reference.Logits, run.Logits, reference.Vocab, reference.Routing, run.Routing);
                output.WriteLine($"{variant} {dtype}: {metrics}");
                Assert.True(metrics.Positions >= TextPositions);
                Assert.True(metrics.DecisivePositions >= TextPositions / 2, $"{variant}: only {metrics.DecisivePositions} decisive positions");
                Assert.Equal(entry.ModelDescription.MoeLayers.Length, metrics.Routing.Count);
                if (dtype == DType.BF16) continue; // the yardstick
                bool int8 = dtype == DType.I8;
                Assert.True(metrics.MeanKl <= (int8 ? 1e-3 : 2e-2), $"{variant} {dtype} mean KL {metrics.MeanKl:E3}");
                Assert.True(metrics.DecisiveTop1Agreement >= (int8 ? 0.99 : 0.75), $"{variant} {dtype} decisive top-1 {metrics.DecisiveTop1Agreement:P2}");
                Assert.True(metrics.Top1Agreement >= (int8 ? 0.95 : 0.55), $"{variant} {dtype} top-1 {metrics.Top1Agreement:P2}");
                foreach (var (site, layer, agreement) in metrics.Routing)
                    Assert.True(agreement >= (int8 ? 0.97 : 0.75), $"{variant} {dtype} {site} layer {layer} routing agreement {agreement:P1}");
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>
    /// The same on full-size MoE-LLaVA-Qwen-1.8B-4e random weights (MOE_SLOW_TESTS=1; writes a 6.7 GB bf16 checkpoint
    /// unless MOE_FIDELITY_CHECKPOINT names one of that variant, e.g. ModelBench's cached one). The reference is the f32
    /// arithmetic on the bf16 weights as stored; int8 and q4 are quantised from the same values at load.
    /// </summary>
    [SlowFact]
    public void FullSizeQwen4e_QuantisedForwardStaysCloseToTheBf16Weights()
    {
        var entry = ModelCatalog.Find("MoeLlavaQwen4e")!;
        string? given = Environment.GetEnvironmentVariable("MOE_FIDELITY_CHECKPOINT");
        string? temporary = given is null ? Path.Combine(Path.GetTempPath(), "moe-fidelity-" + Guid.NewGuid().ToString("N")) : null;
        string folder = given ?? temporary!;
        try
        {
            if (temporary is not null)
            {
                Directory.CreateDirectory(temporary);
                RandomCheckpoint.Write(entry.Manifest, Path.Combine(temporary, "model.safetensors"), seed: 1, DType.BF16);
            }
            var reference = Run(entry, folder, null);
            var results = new List<(DType DType, FidelityMetrics Metrics)>();
            foreach (var dtype in new[] { DType.I8, DType.Q4 })
            {
                var run = Run(entry, folder, dtype);
                var metrics = FidelityMetrics.Compare(reference.Logits, run.Logits, reference.Vocab, reference.Routing, run.Routing);
                output.WriteLine($"MoeLlavaQwen4e {dtype}: {metrics}");
                Console.WriteLine($"MoeLlavaQwen4e {dtype}: {metrics}");
                results.Add((dtype, metrics));
            }
            // The KL targets. Measured 2026-12-05: both miss (int8 2.07e-3, q4 9.35e-2; docs/quantization.md): open.
            foreach (var (dtype, metrics) in results)
            {
                Assert.True(metrics.Positions >= TextPositions);
                Assert.True(metrics.MeanKl <= (dtype == DType.I8 ? 1e-3 : 2e-2), $"{dtype} mean KL {metrics.MeanKl:E3}");
            }
        }
        finally
        {
            if (temporary is not null) Directory.Delete(temporary, recursive: true);
        }
    }

    /// <summary>
    /// (a) of the fidelity investigation: the quantised kernels compute what the format stands for. The same weights,
    /// quantised, run once through the int8/q4 kernels and once dequantised to f32 through the f32 kernels (fake
    /// quantisation); the two forwards differ only by f32 summation order, far below the format's own error.
    /// </summary>
    [Theory]
    [InlineData("TinyQwenMoe", QuantizationType.Int8)]
    [InlineData("TinyQwenMoe", QuantizationType.Q4)]
    [InlineData("TinyCuMoMixtral", QuantizationType.Q4)]
    public void QuantisedKernelsMatchTheFakeQuantisedF32Forward(string variant, QuantizationType type)
    {
        var entry = ModelCatalog.Find(variant)!;
        string folder = Path.Combine(Path.GetTempPath(), "moe-fidelity-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        try
        {
            string checkpoint = Path.Combine(folder, "model.safetensors");
            RandomCheckpoint.Write(entry.Manifest, checkpoint, seed: 16);
            // f32 activations throughout: the integer paths quantise activations too (IntegerDecodeFidelityTests has them).
            using var f32Activations = new CpuBackend(2) { IntegerDotDecode = false, IntegerGemmPrefill = false };
            var fake = Run(entry, checkpoint, new BindOptions { Quantization = new QuantizationOptions(type) { Simulate = true } });
            var kernels = Run(entry, checkpoint, new BindOptions { Quantization = new QuantizationOptions(type) }, backend: f32Activations);
            var format = Run(entry, checkpoint, new BindOptions());
            var kernelError = FidelityMetrics.Compare(fake.Logits, kernels.Logits, fake.Vocab, fake.Routing, kernels.Routing);
            var formatError = FidelityMetrics.Compare(format.Logits, fake.Logits, fake.Vocab, format.Routing, fake.Routing);
            output.WriteLine($"{variant} {type}: kernels vs fake-quantised f32: {kernelError}; fake-quantised vs f32: {formatError}");
            Assert.True(kernelError.MeanKl <= formatError.MeanKl / 100, $"kernel KL {kernelError.MeanKl:E3} vs format KL {formatError.MeanKl:E3}");
            Assert.True(kernelError.MaxRelativeLogitError <= 1e-3, $"kernel max relative logit error {kernelError.MaxRelativeLogitError:E3}");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>
    /// Where the full-size error comes from (docs/quantization.md): one f32 reference, then each configuration of
    /// MOE_FIDELITY_ABLATIONS (default: all of them), printed as it finishes; KL also over the text positions only.
    /// Needs MOE_SLOW_TESTS=1 and MOE_FIDELITY_CHECKPOINT (a full-size MoeLlavaQwen4e bf16 folder); asserts nothing
    /// beyond running: it is a measurement, its numbers are in the docs.
    /// </summary>
    [SlowFact]
    public void FullSizeQwen4e_ErrorByTensorRole()
    {
        var entry = ModelCatalog.Find("MoeLlavaQwen4e")!;
        string folder = Environment.GetEnvironmentVariable("MOE_FIDELITY_CHECKPOINT")
            ?? throw new InvalidOperationException("set MOE_FIDELITY_CHECKPOINT to a MoeLlavaQwen4e bf16 checkpoint folder");
        int textPositions = int.TryParse(Environment.GetEnvironmentVariable("MOE_FIDELITY_TEXT"), out int t) ? t : 64;
        var configurations = new Dictionary<string, QuantizationOptions>
        {
            // The default policy: int8 keeps the tower and projector as stored, q4 puts them at int8.
            ["int8"] = new(QuantizationType.Int8),
            ["int8-tower-int8"] = new(QuantizationType.Int8) { TowerType = QuantizationType.Int8 }, // the default before 2026-12-06
            ["int8-f32scales"] = new(QuantizationType.Int8) { ScaleDType = DType.F32 },
            ["int8-embeddings+lm_head"] = new(QuantizationType.Int8) { Roles = new HashSet<WeightRole> { WeightRole.Embedding, WeightRole.LmHead } },
            ["int8-attention"] = new(QuantizationType.Int8) { Roles = new HashSet<WeightRole> { WeightRole.Attention } },
            ["int8-dense-ffn"] = new(QuantizationType.Int8) { Roles = new HashSet<WeightRole> { WeightRole.FeedForward } },
            ["int8-experts"] = new(QuantizationType.Int8) { Roles = new HashSet<WeightRole> { WeightRole.Expert } },
            ["int8-tower+projector"] = new(QuantizationType.Int8) { TowerType = QuantizationType.Int8, Roles = new HashSet<WeightRole> { WeightRole.Vision, WeightRole.Projector } },
            ["q4"] = new(QuantizationType.Q4),
            ["q4-tower-q4"] = new(QuantizationType.Q4) { TowerType = QuantizationType.Q4 }, // the default before 2026-12-06
            // Token embedding and lm_head at q4 too (`moe quantize --embeddings q4`): every Linear weight at 4.5 bits, as
            // in the llama.cpp Q4_0 stand-in of benchmarks/run-peers.py.
            ["q4-embeddings-q4"] = new(QuantizationType.Q4) { EmbeddingType = QuantizationType.Q4 },
            // The mixed recipe: q4 on the experts only; attention and dense FFN at int8 (tower int8 by default).
            ["q4-mixed"] = new(QuantizationType.Q4) { RoleTypes = MixedRecipe },
            ["q4-f32scales"] = new(QuantizationType.Q4) { ScaleDType = DType.F32 },
            ["q4-tower+projector"] = new(QuantizationType.Q4) { TowerType = QuantizationType.Q4, Roles = new HashSet<WeightRole> { WeightRole.Vision, WeightRole.Projector } },
            ["q4-llm"] = new(QuantizationType.Q4) { Roles = new HashSet<WeightRole> { WeightRole.Attention, WeightRole.FeedForward, WeightRole.Expert } },
            ["q4-attention"] = new(QuantizationType.Q4) { Roles = new HashSet<WeightRole> { WeightRole.Attention } },
            ["q4-experts"] = new(QuantizationType.Q4) { Roles = new HashSet<WeightRole> { WeightRole.Expert } },
            ["q4-dense-ffn"] = new(QuantizationType.Q4) { Roles = new HashSet<WeightRole> { WeightRole.FeedForward } },
            ["q4-search"] = new(QuantizationType.Q4) { SearchScale = true },
            ["int8-tower-kept"] = new(QuantizationType.Int8) { RoleTypes = KeptTower },
            ["q4-tower-kept"] = new(QuantizationType.Q4) { RoleTypes = KeptTower },
            ["q4-search-tower-kept"] = new(QuantizationType.Q4) { SearchScale = true, RoleTypes = KeptTower },
            ["q4-search-tower-int8"] = new(QuantizationType.Q4) { SearchScale = true, RoleTypes = Int8Tower },
            ["q4-search-attention-tower-int8"] = new(QuantizationType.Q4)
            {
                SearchScale = true,
                RoleTypes = new Dictionary<WeightRole, QuantizationType?>(Int8Tower) { [WeightRole.Attention] = QuantizationType.Int8 },
            },
        };
        var chosen = Environment.GetEnvironmentVariable("MOE_FIDELITY_ABLATIONS")?.Split(',', StringSplitOptions.RemoveEmptyEntries) ?? [.. configurations.Keys];
        var reference = Run(entry, folder, new BindOptions(), textPositions);
        int vocab = reference.Vocab, positions = reference.Logits.Length / vocab;
        foreach (var name in chosen)
        {
            var run = Run(entry, folder, new BindOptions { Quantization = configurations[name] }, textPositions);
            var all = FidelityMetrics.Compare(reference.Logits, run.Logits, vocab, reference.Routing, run.Routing);
            var text = FidelityMetrics.Compare(reference.Logits.AsSpan((positions - textPositions) * vocab), run.Logits.AsSpan((positions - textPositions) * vocab),
                vocab, reference.Routing, reference.Routing);
            string line = $"ABLATION {name}: {all} | last {textPositions} text positions: top-1 {text.Top1Agreement:P2}, mean KL {text.MeanKl:E3}";
            output.WriteLine(line);
            Console.WriteLine(line);
            // xunit shows output only at the end; a long measurement can be followed in this file.
            if (Environment.GetEnvironmentVariable("MOE_FIDELITY_LOG") is { } log) File.AppendAllText(log, line + Environment.NewLine);
        }
    }

    private static readonly Dictionary<WeightRole, QuantizationType?> MixedRecipe = new()
    {
        [WeightRole.Attention] = QuantizationType.Int8,
        [WeightRole.FeedForward] = QuantizationType.Int8,
    };

    private static readonly Dictionary<WeightRole, QuantizationType?> KeptTower = new()
    {
        [WeightRole.Vision] = null,
        [WeightRole.Projector] = null,
    };

    private static readonly Dictionary<WeightRole, QuantizationType?> Int8Tower = new()
    {
        [WeightRole.Vision] = QuantizationType.Int8,
        [WeightRole.Projector] = QuantizationType.Int8,
    };

    private static (float[] Logits, IReadOnlyList<RoutingRecord> Routing, int Vocab) Run(ModelCatalogEntry entry, string checkpoint, DType? dtype) =>
        Run(entry, checkpoint, new BindOptions { TargetDType = dtype });

    private static (float[] Logits, IReadOnlyList<RoutingRecord> Routing, int Vocab) Run(ModelCatalogEntry entry, string checkpoint, BindOptions options,
        int textPositions = TextPositions, IBackend? backend = null)
    {
        backend ??= CpuBackend.Shared;
        var model = entry.Load(checkpoint, backend, options);
        try
        {
            var d = model.Description;
            var random = new Random(2026);
            // A text-only variant takes the same text without the image placeholder.
            int[] ids = [.. Enumerable.Range(0, 3).Select(_ => random.Next(d.TokenizerSize)), .. (d.HasVision ? [PromptSplicer.ImageTokenId] : Array.Empty<int>()),
                .. Enumerable.Range(0, textPositions).Select(_ => random.Next(d.TokenizerSize))];
            var images = new List<Tensor>();
            if (d.HasVision)
            {
                var pixelValues = new float[3 * d.ImageSize * d.ImageSize];
                for (int i = 0; i < pixelValues.Length; i++) pixelValues[i] = (float)(random.NextDouble() * 2 - 1);
                var pixels = backend.Allocate(DType.F32, 3, d.ImageSize, d.ImageSize);
                backend.Upload(pixelValues, pixels);
                images.Add(pixels);
            }
            var recorder = new RoutingRecorder();
            var context = new ForwardContext(backend, new KvCache(backend, d.Layers, ids.Length + d.ImageTokens, d.KvHeads * d.HeadDim));
            var spliced = PromptSplicer.Splice(model, new ForwardContext(backend), context, ids, images);
            context.IsImageToken = spliced.IsImageToken;
            context.Routing = recorder;
            var logits = model.Forward(context, spliced.Embeddings);
            var values = new float[logits.Length];
            backend.Download(logits, values);
            return (values, recorder.Records.Where(r => r.Site == RoutingSites.Llm).ToList(), logits.Columns);
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }
}
