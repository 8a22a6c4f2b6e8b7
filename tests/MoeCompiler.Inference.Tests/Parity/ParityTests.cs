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
/// with the reference run on the same bf16-rounded weights, within <see cref="Bf16Tolerance"/>.
/// </summary>
public class ParityTests
{
    public const double F32Tolerance = 1e-4;
    /// <summary>Activations stay f32 and only the weights are bf16, so the arithmetic is that of the f32 run on
    /// bf16-exact values; the looser bound leaves room for kernels that round activations to bf16 for the dot
    /// products (2⁻⁸ relative per operand, summed over a few layers).</summary>
    public const double Bf16Tolerance = 1e-2;
    public const int GeneratedTokens = 16;

    public static TheoryData<string, string> Specs()
    {
        var data = new TheoryData<string, string>();
        foreach (var (folder, className) in VariantLoader.TinySpecs) data.Add(folder, className);
        return data;
    }

    [ParityTheory]
    [MemberData(nameof(Specs))]
    public void Float32_MatchesTheReference(string folder, string className)
        => RunAndCompare(folder, className, DType.F32, bf16: false);

    [ParityTheory]
    [MemberData(nameof(Specs))]
    public void Bfloat16_MatchesTheReferenceOnBf16RoundedWeights(string folder, string className)
        => RunAndCompare(folder, className, DType.BF16, bf16: true);

    private static void RunAndCompare(string folder, string className, DType dtype, bool bf16)
    {
        var golden = Golden.Load(folder);
        IBackend backend = CpuBackend.Shared;
        var model = VariantLoader.Load(className, golden.CheckpointPath, backend, dtype);
        try
        {
            double tolerance = bf16 ? Bf16Tolerance : F32Tolerance;
            var pixels = backend.Allocate(DType.F32, golden.PixelsShape);
            backend.Upload(golden.Pixels(), pixels);

            // Image features: tower, S2, projector.
            var features = model.EncodeImage(new ForwardContext(backend), pixels);
            Assert.Equal(golden.ImageFeaturesShape, features.Shape.ToArray());
            if (!bf16) Compare.Within(Download(backend, features), golden.ImageFeatures(), tolerance, $"{folder} image features");

            // Prefill logits over the spliced sequence.
            var d = model.Description;
            var cache = new KvCache(backend, d.Layers, golden.LogitsShape[0], d.KvHeads * d.HeadDim);
            var context = new ForwardContext(backend, cache);
            var spliced = PromptSplicer.Splice(model, new ForwardContext(backend), context, golden.InputIds, [pixels]);
            Assert.Equal(golden.IsImageToken, spliced.IsImageToken);
            context.IsImageToken = spliced.IsImageToken;
            var logits = model.Forward(context, spliced.Embeddings);
            Assert.Equal(golden.LogitsShape, logits.Shape.ToArray());
            Compare.Within(Download(backend, logits), bf16 ? golden.LogitsBf16() : golden.Logits(), tolerance, $"{folder} {dtype} prefill logits");

            // 16 greedy tokens with the KV cache, through the generation loop.
            var steps = new List<float[]>();
            var result = new TextGenerator(model, backend).Generate(new GenerationRequest
            {
                PromptIds = golden.InputIds,
                Images = [pixels],
                Options = new GenerationOptions { MaxNewTokens = GeneratedTokens, StopOnEos = false },
                ObserveLogits = (_, row) => steps.Add(row.ToArray()),
            });
            int[] expectedIds = bf16 ? golden.Bf16GeneratedIds : golden.GeneratedIds;
            Assert.Equal(expectedIds[0], result.TokenIds[0]);
            Assert.Equal(expectedIds, result.TokenIds);
            if (!bf16) Compare.Within(steps.SelectMany(r => r).ToArray(), golden.StepLogits(), tolerance, $"{folder} decode-step logits");
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    private static float[] Download(IBackend backend, Tensor t)
    {
        var values = new float[t.Length];
        backend.Download(t, values);
        return values;
    }
}
