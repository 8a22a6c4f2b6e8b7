using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Parity;

/// <summary>The generated text-only variants (tiny-*-text specs: "vision": null) take token ids only: their type has
/// no image encoding, their description says so, and an image is a clear input error, not a crash.</summary>
public class TextOnlyVariantTests
{
    [Theory]
    [InlineData("tiny-mixtral-text")]
    [InlineData("tiny-qwen-text")]
    public void AnImageForATextOnlyVariantIsAModelInputError(string folder)
    {
        var golden = Golden.Load(folder);
        IBackend backend = CpuBackend.Shared;
        var model = VariantLoader.Load(folder, golden.CheckpointPath, backend, DType.F32);
        try
        {
            string name = model.Description.Name;
            var pixels = backend.Allocate(DType.F32, 3, 56, 56);
            var generator = new TextGenerator(model, backend);
            int[] withPlaceholder = [.. golden.InputIds[..4], PromptSplicer.ImageTokenId, .. golden.InputIds[4..]];
            foreach (var (ids, images) in new (int[], Tensor[])[] { (withPlaceholder, [pixels]), (golden.InputIds, [pixels]), (withPlaceholder, []) })
            {
                var error = Assert.Throws<ModelInputException>(() => generator.Generate(new GenerationRequest
                {
                    PromptIds = ids,
                    Images = images,
                    Options = new GenerationOptions { MaxNewTokens = 1 },
                }));
                Assert.Equal($"{name} is text-only: it takes no image", error.Message);
            }
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    [Fact]
    public void TextOnlyTypesOfferNoImageEncoding()
    {
        foreach (var type in new[] { typeof(TinyMixtralText), typeof(TinyQwenText), typeof(Mixtral8x7BInstruct) })
        {
            Assert.True(typeof(ILanguageModel).IsAssignableFrom(type));
            Assert.False(typeof(IVisionLanguageModel).IsAssignableFrom(type), $"{type.Name} claims to encode images");
            Assert.Null(type.GetMethod("EncodeImage"));
            Assert.Null(type.GetProperty("Vision"));
            Assert.Null(type.GetProperty("Projector"));
        }
        Assert.True(typeof(IVisionLanguageModel).IsAssignableFrom(typeof(TinyCuMoMixtral)));
    }

    [Fact]
    public void CatalogDescribesTextOnlyVariantsWithoutATower()
    {
        foreach (string name in new[] { "TinyMixtralText", "TinyQwenText", "Mixtral8x7BInstruct" })
        {
            var entry = ModelCatalog.Find(name)!;
            var d = entry.ModelDescription;
            Assert.False(d.HasVision);
            Assert.Equal(("none", 0, 0), (d.VisionTower, d.ImageTokens, d.ImageSize));
            Assert.Empty(d.VisionScales);
            Assert.DoesNotContain(entry.Manifest.Entries, e => e.Role is Runtime.Checkpoints.WeightRole.Vision or Runtime.Checkpoints.WeightRole.Projector);
            Assert.DoesNotContain(entry.Manifest.Entries, e => e.Key.Contains("image_tower", StringComparison.Ordinal) ||
                                                              e.Key.Contains("vision_tower", StringComparison.Ordinal) || e.Key.Contains("mm_projector", StringComparison.Ordinal));
        }
        Assert.True(ModelCatalog.Find("TinyCuMoMixtral")!.ModelDescription.HasVision);
    }

    /// <summary>Mixtral-8x7B-Instruct-v0.1's published dimensions (config.json): 46.7B parameters, 12.9B per token.</summary>
    [Fact]
    public void Mixtral8x7BInstructHasThePublishedShapeAndParameterCounts()
    {
        var entry = ModelCatalog.Find("Mixtral8x7BInstruct")!;
        var d = entry.ModelDescription;
        Assert.Equal(("mixtral", 32000, 4096, 32, 32, 8, 128), (d.LlmFamily, d.VocabSize, d.HiddenSize, d.Layers, d.Heads, d.KvHeads, d.HeadDim));
        Assert.Equal(Enumerable.Range(0, 32), d.MoeLayers);
        Assert.Equal((8, 2, 1, "mistral_instruct"), (d.Experts, d.TopK, d.BosId, d.PromptTemplate));
        Assert.Equal([2], d.EosIds);
        // 32 × (attention 4096·(4096 + 2·1024 + 4096) + router 8·4096 + 8 experts × 3·4096·14336 + 2 norms) + 2 × 32000·4096 + final norm.
        long perLayer = 4096L * (4096 + 1024 + 1024 + 4096) + 8 * 4096 + 8 * 3L * 4096 * 14336 + 2 * 4096;
        Assert.Equal(32 * perLayer + 2L * 32000 * 4096 + 4096, entry.TotalParameters);
        Assert.Equal(46_702_792_704L, entry.TotalParameters);
        Assert.Equal(entry.TotalParameters - 32 * 6 * 3L * 4096 * 14336, entry.ActivatedParameters);
        Assert.Contains(entry.Manifest.Entries, e => e.Key == "model.layers.31.block_sparse_moe.experts.7.w3.weight" && e.Shape.SequenceEqual([14336, 4096]));
        Assert.Contains(entry.Manifest.Entries, e => e.Key == "model.layers.0.block_sparse_moe.gate.weight" && e.Shape.SequenceEqual([8, 4096]));
        Assert.Contains(entry.Manifest.Entries, e => e.Key == "model.layers.0.self_attn.k_proj.weight" && e.Shape.SequenceEqual([1024, 4096]));
    }

    /// <summary>The weight budget of a text-only variant has no vision side, and its per-token bytes are the LLM's
    /// activated parameters (the catalog's count) plus one embedding row, nothing for a tower.</summary>
    [Fact]
    public void WeightBudgetOfATextOnlyVariantHasNoVisionSide()
    {
        var entry = ModelCatalog.Find("Mixtral8x7BInstruct")!;
        var budget = new Runtime.Diagnostics.WeightBudget(entry.Manifest, entry.ModelDescription, bytesPerParameter: 2);
        Assert.Equal((0L, 0L, 0L), (budget.VisionParameters, budget.VisionMatmulParameters, budget.ProjectorParameters));
        Assert.Equal(0.0, budget.VisionFlops(positions: 577, imageTokens: 576));
        Assert.Equal(entry.TotalParameters, budget.TotalParameters);
        long embedding = 32000L * 4096;
        Assert.Equal((entry.ActivatedParameters - embedding + 4096) * 2, budget.DecodeBytesPerToken);
    }
}
