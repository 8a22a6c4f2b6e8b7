using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Parity;

/// <summary>
/// The generated tiny variants against the independent PyTorch reference (tests/reference/moe_reference.py,
/// float64 math): same committed checkpoint, same pixels and prompt ids.
/// Tolerances: float32 weights, max |Δ| ≤ 1e-4 · max |reference| for image features, prefill logits and every
/// decode step's logits; identical greedy tokens. bfloat16 weights (BindOptions.TargetDType = BF16) are compared
/// with the reference run on the same bf16-rounded weights, within <see cref="Bf16Tolerance"/>. Text-only variants
/// (tiny-*-text) run the same checks without an image.
/// </summary>
public class ParityTests(Xunit.Abstractions.ITestOutputHelper output)
{
    public const double F32Tolerance = 1e-4;
    /// <summary>Activations stay f32 and only the weights are bf16, so the arithmetic is that of the f32 run on
    /// bf16-exact values; the looser bound leaves room for kernels that round activations to bf16 for the dot
    /// products (2⁻⁸ relative per operand, summed over a few layers).</summary>
    public const double Bf16Tolerance = 1e-2;
    /// <summary>bf16 keys and values carry up to 2⁻⁹ relative rounding each into every attention; on the tiny
    /// variants that moves decode logits by 0.9e-3 … 2.5e-3 of max |logit| (measured): the bf16 bound applies.</summary>
    public const double Bf16KvTolerance = Bf16Tolerance;
    public const int GeneratedTokens = 16;

    public static TheoryData<string> Specs() => new(VariantLoader.Folders);

    [Theory]
    [MemberData(nameof(Specs))]
    public void Float32_MatchesTheReference(string folder) => RunAndCompare(folder, bf16: false);

    [Theory]
    [MemberData(nameof(Specs))]
    public void Bfloat16_MatchesTheReferenceOnBf16RoundedWeights(string folder) => RunAndCompare(folder, bf16: true);

    /// <summary>
    /// bf16 weights get a bf16 KV cache by default on the CPU (keys and values rounded as they are stored, as a
    /// PyTorch bf16 model keeps them). Against the same run with an exact f32 cache: every decode step's logits within
    /// <see cref="Bf16KvTolerance"/> of max |logit|, and the same 16 greedy tokens as the bf16 reference.
    /// </summary>
    [Theory]
    [InlineData("tiny-stablelm-moe")]
    [InlineData("tiny-qwen-moe")]
    [InlineData("tiny-phi-moe")]
    [InlineData("tiny-openchat-moe")]
    [InlineData("tiny-cumo-mixtral")]
    [InlineData("tiny-mixtral-text")]
    [InlineData("tiny-qwen-text")]
    public void Bf16KvCache_IsTheDefaultForBf16WeightsAndStaysCloseToAnExactCache(string folder)
    {
        var golden = Golden.Load(folder);
        IBackend backend = CpuBackend.Shared;
        var model = VariantLoader.Load(folder, golden.CheckpointPath, backend, DType.BF16);
        try
        {
            Assert.Equal(DType.BF16, model.LlmWeightDType);
            var images = Images(golden, backend);
            (int[] Ids, float[] Logits, DType Cache) Run(DType? kv)
            {
                var steps = new List<float[]>();
                DType used = DType.I8;
                var result = new TextGenerator(model, backend).Generate(new GenerationRequest
                {
                    PromptIds = golden.InputIds,
                    Images = images,
                    Options = new GenerationOptions { MaxNewTokens = GeneratedTokens, StopOnEos = false, KvCacheDType = kv },
                    ObserveLogits = (_, row) => steps.Add(row.ToArray()),
                    ConfigureContext = c => { if (c.Cache is { } cache) used = cache.DType; },
                });
                return (result.TokenIds, steps.SelectMany(r => r).ToArray(), used);
            }
            var rounded = Run(null);
            var exact = Run(DType.F32);
            Assert.Equal(DType.BF16, rounded.Cache);
            Assert.Equal(DType.F32, exact.Cache);
            Within(rounded.Logits, exact.Logits, Bf16KvTolerance, $"{folder} decode-step logits, bf16 vs f32 KV cache");
            Assert.Equal(golden.Bf16GeneratedIds, rounded.Ids);
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    /// <summary>Two images in one prompt: each placeholder gets its own image's features, positions run over the
    /// whole spliced sequence, and the MoE layers route both images' tokens in one call.</summary>
    [Theory]
    [InlineData("tiny-qwen-moe")]
    [InlineData("tiny-cumo-mixtral")]
    public void TwoImages_MatchTheReference(string folder)
    {
        var golden = Golden.Load(folder);
        var two = golden.TwoImages ?? throw new InvalidOperationException($"{folder} has no two-image golden");
        IBackend backend = CpuBackend.Shared;
        var model = (IVisionLanguageModel)VariantLoader.Load(folder, golden.CheckpointPath, backend, DType.F32);
        try
        {
            var first = backend.Allocate(DType.F32, golden.PixelsShape);
            backend.Upload(golden.Pixels(), first);
            var second = backend.Allocate(DType.F32, golden.PixelsShape);
            backend.Upload(golden.SecondPixels(), second);

            var d = model.Description;
            var context = new ForwardContext(backend, new KvCache(backend, d.Layers, two.LogitsShape[0], d.KvHeads * d.HeadDim));
            var spliced = PromptSplicer.Splice(model, new ForwardContext(backend), context, two.InputIds, [first, second]);
            Assert.Equal(two.IsImageToken, spliced.IsImageToken);
            context.IsImageToken = spliced.IsImageToken;
            Within(Download(backend, model.Forward(context, spliced.Embeddings)), golden.TwoImagesLogits(), F32Tolerance, $"{folder} two-image prefill logits");

            var result = new TextGenerator(model, backend).Generate(new GenerationRequest
            {
                PromptIds = two.InputIds,
                Images = [first, second],
                Options = new GenerationOptions { MaxNewTokens = two.GeneratedIds.Length, StopOnEos = false },
            });
            Assert.Equal(two.GeneratedIds, result.TokenIds);
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    /// <summary>The runtime modules composed by hand for tiny-stablelm-moe (independent of the generator).</summary>
    [Fact]
    public void HandComposedModules_MatchTheReference_StableLm()
    {
        var golden = Golden.Load("tiny-stablelm-moe");
        using var model = new HandComposedStableLm(golden.CheckpointPath, CpuBackend.Shared);
        Compare(golden, model, CpuBackend.Shared, "tiny-stablelm-moe (hand-composed)", bf16: false);
    }

    [Theory]
    [MemberData(nameof(Specs))]
    public void LastRowLogitsOnly_IsTheLastRowOfTheFullForward(string folder)
    {
        var golden = Golden.Load(folder);
        IBackend backend = CpuBackend.Shared;
        var model = VariantLoader.Load(folder, golden.CheckpointPath, backend, DType.F32);
        try
        {
            var images = Images(golden, backend);
            var d = model.Description;
            float[] Run(bool lastRowOnly, out int rows)
            {
                var cache = new KvCache(backend, d.Layers, golden.LogitsShape[0], d.KvHeads * d.HeadDim);
                var context = new ForwardContext(backend, cache) { LastRowLogitsOnly = lastRowOnly };
                var spliced = PromptSplicer.Splice(model, new ForwardContext(backend), context, golden.InputIds, images);
                context.IsImageToken = spliced.IsImageToken;
                var logits = model.Forward(context, spliced.Embeddings);
                rows = logits.Dim(0);
                return Download(backend, logits.SliceRows(rows - 1, 1));
            }
            float[] full = Run(lastRowOnly: false, out int fullRows);
            float[] last = Run(lastRowOnly: true, out int lastRows);
            Assert.Equal(golden.LogitsShape[0], fullRows);
            Assert.Equal(1, lastRows);
            // One row goes through the matrix-vector kernel, many through the blocked GEMM: same products, another
            // summation order, so equal to float rounding rather than bit for bit.
            Within(last, full, 1e-5, $"{folder} last-row-only logits vs full forward");
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    private void RunAndCompare(string folder, bool bf16)
    {
        var golden = Golden.Load(folder);
        IBackend backend = CpuBackend.Shared;
        var model = VariantLoader.Load(folder, golden.CheckpointPath, backend, bf16 ? DType.BF16 : DType.F32);
        try
        {
            Compare(golden, model, backend, folder, bf16);
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    /// <summary>The golden's image on the backend: one for a vision golden, none for a text-only one.</summary>
    private static IReadOnlyList<Tensor> Images(Golden golden, IBackend backend)
    {
        if (golden.TextOnly) return [];
        var pixels = backend.Allocate(DType.F32, golden.PixelsShape);
        backend.Upload(golden.Pixels(), pixels);
        return [pixels];
    }

    private void Compare(Golden golden, ILanguageModel model, IBackend backend, string folder, bool bf16)
    {
        DType dtype = bf16 ? DType.BF16 : DType.F32;
        double tolerance = bf16 ? Bf16Tolerance : F32Tolerance;
        var images = Images(golden, backend);
        // A text-only variant is not a vision model at all: its type has no EncodeImage.
        Assert.Equal(golden.TextOnly, model is not IVisionLanguageModel);
        Assert.Equal(golden.TextOnly, !model.Description.HasVision);

        // Image features: tower, S2, projector.
        if (model is IVisionLanguageModel vision)
        {
            var features = vision.EncodeImage(new ForwardContext(backend), images[0]);
            Assert.Equal(golden.ImageFeaturesShape, features.Shape.ToArray());
            if (!bf16) Within(Download(backend, features), golden.ImageFeatures(), tolerance, $"{folder} image features");
        }

        // Prefill logits over the spliced sequence.
        var d = model.Description;
        var cache = new KvCache(backend, d.Layers, golden.LogitsShape[0], d.KvHeads * d.HeadDim);
        var context = new ForwardContext(backend, cache);
        var spliced = PromptSplicer.Splice(model, new ForwardContext(backend), context, golden.InputIds, images);
        Assert.Equal(golden.IsImageToken, spliced.IsImageToken);
        context.IsImageToken = spliced.IsImageToken;
        var logits = model.Forward(context, spliced.Embeddings);
        Assert.Equal(golden.LogitsShape, logits.Shape.ToArray());
        Within(Download(backend, logits), bf16 ? golden.LogitsBf16() : golden.Logits(), tolerance, $"{folder} {dtype} prefill logits");

        // 16 greedy tokens with the KV cache, through the generation loop, recording every routing decision.
        var steps = new List<float[]>();
        var recorder = new RoutingRecorder();
        var result = new TextGenerator(model, backend).Generate(new GenerationRequest
        {
            PromptIds = golden.InputIds,
            Images = images,
            // The reference keeps keys and values exact; the bf16 cache is compared on its own below.
            Options = new GenerationOptions { MaxNewTokens = GeneratedTokens, StopOnEos = false, KvCacheDType = DType.F32 },
            ObserveLogits = (_, row) => steps.Add(row.ToArray()),
            ConfigureContext = c => c.Routing = recorder,
        });
        CompareRouting(recorder.Records, bf16 ? golden.Bf16Routing : golden.Routing, folder);
        int[] expectedIds = bf16 ? golden.Bf16GeneratedIds : golden.GeneratedIds;
        Assert.Equal(expectedIds[0], result.TokenIds[0]);
        Assert.Equal(expectedIds, result.TokenIds);
        if (!bf16) Within(steps.SelectMany(r => r).ToArray(), golden.StepLogits(), tolerance, $"{folder} decode-step logits");
    }

    /// <summary>
    /// Per (site, layer), the decisions of all calls in execution order must be identical: same experts in the same
    /// order (first choice first), a dropped assignment (reference weight 0) recorded as expert −1, and combine
    /// weights within 1e-4. The set of MoE layers that ran must be the same too (no unused vision layers).
    /// </summary>
    private static void CompareRouting(IReadOnlyList<RoutingRecord> actual, IReadOnlyList<GoldenRouting> expected, string folder)
    {
        var expectedRows = expected.GroupBy(r => (r.Site, r.Layer)).ToDictionary(g => g.Key,
            g => g.SelectMany(r => r.Experts.Zip(r.Weights, (e, w) => (Experts: e.Zip(w, (x, y) => y == 0 ? -1 : x).ToArray(), Weights: w))).ToList());
        var actualRows = actual.GroupBy(r => (r.Site, r.Layer)).ToDictionary(g => g.Key,
            g => g.SelectMany(r => Enumerable.Range(0, r.Tokens).Select(t =>
                (Experts: Enumerable.Range(0, r.TopK).Select(j => r.Expert(t, j)).ToArray(),
                 Weights: Enumerable.Range(0, r.TopK).Select(j => (double)r.Weight(t, j)).ToArray()))).ToList());
        Assert.Equal(expectedRows.Keys.OrderBy(k => k).ToArray(), actualRows.Keys.OrderBy(k => k).ToArray());
        foreach (var (key, rows) in expectedRows)
        {
            var got = actualRows[key];
            Assert.True(rows.Count == got.Count, $"{folder} {key}: {got.Count} routed tokens, reference {rows.Count}");
            for (int i = 0; i < rows.Count; i++)
            {
                Assert.True(rows[i].Experts.SequenceEqual(got[i].Experts),
                    $"{folder} {key} token {i}: experts [{string.Join(",", got[i].Experts)}], reference [{string.Join(",", rows[i].Experts)}]");
                for (int j = 0; j < rows[i].Weights.Length; j++)
                    Assert.True(Math.Abs(rows[i].Weights[j] - got[i].Weights[j]) <= 1e-4,
                        $"{folder} {key} token {i} choice {j}: weight {got[i].Weights[j]}, reference {rows[i].Weights[j]}");
            }
        }
    }

    private void Within(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double relative, string what)
    {
        var (diff, maxRef, _) = Parity.Compare.MaxAbsDiff(actual, expected);
        output.WriteLine($"{what}: max |Δ| = {diff:E2}, max |ref| = {maxRef:F3}, ratio {diff / maxRef:E2} (bound {relative:E0})");
        Parity.Compare.Within(actual, expected, relative, what);
    }

    private static float[] Download(IBackend backend, Tensor t)
    {
        var values = new float[t.Length];
        backend.Download(t, values);
        return values;
    }
}
