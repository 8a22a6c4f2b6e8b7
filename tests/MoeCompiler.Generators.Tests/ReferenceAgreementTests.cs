using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Generators.Tests;

/// <summary>Generated LLM forward passes against <see cref="NaiveReference"/> (plain loops, double precision).</summary>
[Collection(CompiledVariantsCollection.Name)]
public class ReferenceAgreementTests
{
    private const float Tolerance = 2e-4f; // |a - b| <= tol * (1 + |b|); f32 kernels against a double reference
    private readonly CompiledVariants _compiled;
    private readonly IBackend _backend = new CpuBackend(threads: 1);

    public ReferenceAgreementTests(CompiledVariants compiled) => _compiled = compiled;

    [Theory]
    [InlineData("TinyStableLmMoe")]
    [InlineData("TinyQwenMoe")]
    [InlineData("TinyPhiMoe")]
    [InlineData("TinyCuMoMixtral")]
    public void LogitsAgreeWithAnIndependentPlainLoopImplementation(string variant)
    {
        var random = new Random(21);
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var raw = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var entry in _compiled.Manifest(variant).Entries)
        {
            var data = new float[entry.ElementCount];
            bool normWeight = entry.Role == WeightRole.Norm && entry.Key.EndsWith(".weight", StringComparison.Ordinal);
            for (int i = 0; i < data.Length; i++) data[i] = normWeight ? 1f + 0.2f * (float)(random.NextDouble() - 0.5) : 0.3f * (float)(random.NextDouble() - 0.5);
            weights.Add(entry.Key, Tensor.FromFloats(data, entry.Shape));
            raw.Add(entry.Key, data);
        }

        using var bound = BoundWeights.FromTensors(weights);
        var model = (IVisionLanguageModel)Activator.CreateInstance(_compiled.VariantType(variant), bound, _backend)!;
        var d = model.Description;
        int[] ids = { 5, 77, 3, 410, 12 };
        var cache = (KvCache)_compiled.VariantType(variant).GetMethod("CreateCache")!.Invoke(null, new object[] { _backend, 16 })!;
        var context = new ForwardContext(_backend, cache);
        var embeddings = model.EmbedTokens(context, ids);
        var actual = model.Forward(context, embeddings).ToFloatArray();

        var reference = new NaiveReference(key => raw[key], raw.ContainsKey)
        {
            Family = d.LlmFamily,
            Hidden = d.HiddenSize,
            Layers = d.Layers,
            Heads = d.Heads,
            KvHeads = d.KvHeads,
            HeadDim = d.HeadDim,
            RotaryDims = _compiled.Constant<int>(variant, "RotaryDims"),
            Theta = _compiled.Constant<float>(variant, "RopeTheta"),
            Eps = _compiled.Constant<float>(variant, "NormEpsilon"),
            LayerNorm = _compiled.Constant<string>(variant, "Norm") == "layernorm",
            Vocab = d.VocabSize,
            MoeLayers = d.MoeLayers,
            Experts = d.Experts,
        };
        string embeddingKey = d.LlmFamily == "qwen" ? "transformer.wte.weight" : "model.embed_tokens.weight";
        var table = raw[embeddingKey];
        var x = ids.Select(id => Enumerable.Range(0, d.HiddenSize).Select(i => (double)table[id * d.HiddenSize + i]).ToArray()).ToArray();
        var expected = reference.Forward(x).SelectMany(r => r).ToArray();

        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(actual[i] - expected[i]) <= Tolerance * (1 + Math.Abs(expected[i])), $"logit {i}: {actual[i]} vs reference {expected[i]}");
        }
    }

    [Theory]
    [InlineData("TinyStableLmMoe", true)]
    [InlineData("TinyQwenMoe", false)]
    public void ImageFeaturesAgreeWithAnIndependentPlainLoopImplementation(string variant, bool clip)
    {
        var random = new Random(4);
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var raw = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var entry in _compiled.Manifest(variant).Entries)
        {
            var data = new float[entry.ElementCount];
            bool normWeight = entry.Key.EndsWith("norm.weight", StringComparison.Ordinal) || entry.Key.Contains("layer_norm", StringComparison.Ordinal) && entry.Key.EndsWith(".weight", StringComparison.Ordinal);
            for (int i = 0; i < data.Length; i++) data[i] = normWeight ? 1f + 0.2f * (float)(random.NextDouble() - 0.5) : 0.3f * (float)(random.NextDouble() - 0.5);
            weights.Add(entry.Key, Tensor.FromFloats(data, entry.Shape));
            raw.Add(entry.Key, data);
        }

        using var bound = BoundWeights.FromTensors(weights);
        var model = (IVisionLanguageModel)Activator.CreateInstance(_compiled.VariantType(variant), bound, _backend)!;
        var d = model.Description;
        var pixels = new float[3 * d.ImageSize * d.ImageSize];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (float)(random.NextDouble() * 4 - 2);
        var actual = model.EncodeImage(new ForwardContext(_backend), Tensor.FromFloats(pixels, 3, d.ImageSize, d.ImageSize)).ToFloatArray();

        var expected = NaiveVisionReference.EncodeImage(key => raw[key], d.LlmFamily == "qwen" ? "transformer." : "model.", clip, pixels, d.ImageSize,
            _compiled.Constant<int>(variant, "PatchSize"), _compiled.Constant<int>(variant, "VisionHiddenSize"), _compiled.Constant<int>(variant, "VisionHeads"),
            _compiled.Constant<int>(variant, "VisionUsedLayers"), _compiled.Constant<float>(variant, "VisionNormEpsilon")).SelectMany(r => r).ToArray();

        Assert.Equal(d.ImageTokens * d.HiddenSize, expected.Length);
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(actual[i] - expected[i]) <= Tolerance * (1 + Math.Abs(expected[i])), $"feature {i}: {actual[i]} vs reference {expected[i]}");
        }
    }
}

