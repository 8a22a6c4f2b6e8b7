using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Diagnostics;
using MoeCompiler.Runtime.Modules;

namespace MoeCompiler.Runtime.Tests.Diagnostics;

public sealed class WeightBudgetTests
{
    private const string Expert = "model.layers.0.mlp.deepspeed_moe.experts.deepspeed_experts.";

    private static readonly WeightManifest Manifest = new("Toy",
    [
        new WeightEntry("model.embed_tokens.weight", [100, 8], WeightRole.Embedding),
        new WeightEntry("model.layers.0.self_attn.q_proj.weight", [8, 8], WeightRole.Attention),
        new WeightEntry("model.layers.0.mlp.deepspeed_moe.gate.wg.weight", [3, 8], WeightRole.Router),
        new WeightEntry(Expert + "0.fc1.weight", [16, 8], WeightRole.Expert),
        new WeightEntry(Expert + "1.fc1.weight", [16, 8], WeightRole.Expert),
        new WeightEntry(Expert + "2.fc1.weight", [16, 8], WeightRole.Expert),
        new WeightEntry("lm_head.weight", [100, 8], WeightRole.LmHead),
        new WeightEntry("model.image_tower.vision_model.encoder.layers.0.mlp.fc1.weight", [4, 4], WeightRole.Vision),
    ], []);

    private static readonly ModelDescription Description = new()
    {
        Name = "Toy", DisplayName = "Toy", LlmFamily = "phi", VocabSize = 100, TokenizerSize = 100, HiddenSize = 8,
        Layers = 1, Heads = 1, KvHeads = 1, HeadDim = 8, MaxPositions = 16, MoeLayers = [0], Experts = 3, TopK = 2,
        TokenizerKind = "gpt2", EosIds = [0], PromptTemplate = "phi", VisionTower = "clip", ImageSize = 28, ImageTokens = 4,
        ImageMean = [0, 0, 0], ImageStd = [1, 1, 1], VisionScales = [1], TotalParameters = 0, ActivatedParameters = 0,
    };

    [Fact]
    public void DecodeReadsSharedWeightsTopKExpertsLmHeadAndOneEmbeddingRow()
    {
        var budget = new WeightBudget(Manifest, Description, bytesPerParameter: 2);
        long shared = 64 + 24;             // q_proj and the router
        long experts = 2 * 128;            // top-2 of 3 equal experts
        long lmHead = 800;
        Assert.Equal(shared, budget.SharedLlmParameters);
        Assert.Equal(experts, budget.ActivatedExpertParameters);
        Assert.Equal((shared + experts + lmHead + 8) * 2, budget.DecodeBytesPerToken);
        Assert.Equal(2.0 * (shared + experts) * 10 + 2.0 * lmHead, budget.PrefillFlops(10));
        Assert.Equal(16, budget.VisionParameters);
    }
}
