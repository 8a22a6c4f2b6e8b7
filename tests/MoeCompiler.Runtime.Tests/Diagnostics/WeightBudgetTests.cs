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
        new WeightEntry(Expert + "0.fc1.weight", [16, 8], WeightRole.Expert, WeightSite.Llm, 0, 0),
        new WeightEntry(Expert + "1.fc1.weight", [16, 8], WeightRole.Expert, WeightSite.Llm, 0, 1),
        new WeightEntry(Expert + "2.fc1.weight", [16, 8], WeightRole.Expert, WeightSite.Llm, 0, 2),
        new WeightEntry("lm_head.weight", [100, 8], WeightRole.LmHead),
        new WeightEntry("model.image_tower.vision_model.encoder.layers.0.mlp.fc1.weight", [4, 4], WeightRole.Vision, WeightSite.Vision, 0, -1),
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

    /// <summary>Layer and expert come from the entry, not from its key: experts under names no family uses are
    /// still counted per layer, and the touched bytes follow the routing records by (layer, expert).</summary>
    [Fact]
    public void ExpertsAreCountedByTheirLayerAndIndexWhateverTheirKeys()
    {
        var manifest = new WeightManifest("Odd",
        [
            new WeightEntry("a", [8, 8], WeightRole.Attention, WeightSite.Llm, 0, -1),
            new WeightEntry("x", [16, 8], WeightRole.Expert, WeightSite.Llm, 0, 0),
            new WeightEntry("y", [16, 8], WeightRole.Expert, WeightSite.Llm, 0, 1),
            new WeightEntry("z", [16, 8], WeightRole.Expert, WeightSite.Llm, 0, 2),
            new WeightEntry("w", [32, 8], WeightRole.Expert, WeightSite.Llm, 1, 2),
            new WeightEntry("unplaced", [5, 8], WeightRole.Expert), // hand-built, no layer or index: always read
            new WeightEntry("lm_head.weight", [100, 8], WeightRole.LmHead),
        ], []);
        var budget = new WeightBudget(manifest, Description, bytesPerParameter: 1);
        Assert.Equal(64 + 40, budget.SharedLlmParameters);
        Assert.Equal(3 * 128 + 256, budget.ExpertParameters);
        Assert.Equal(2 * 128, budget.ActivatedExpertParameters); // top-2: indices 0 and 1; layer 1's expert 2 idles
        var records = new[]
        {
            new RoutingRecord(0, RoutingSites.Llm, 1, 0, 1, 2, 3, [2, -1], [1f, 0f], [false]),
            new RoutingRecord(0, RoutingSites.Vision, 0, 0, 1, 2, 3, [0, 1], [0.5f, 0.5f], [true]),
        };
        Assert.Equal(64 + 40 + 800 + 3 * 8 + 256, budget.TouchedBytes(records, distinctTokenIds: 3));
        Assert.Equal(1, WeightBudget.UsedExperts(records));
    }

    /// <summary>Vision matrices multiplied once per patch: encoder-layer matrices and the patch convolution, not the
    /// position table or the norms outside the layers, whatever the keys say.</summary>
    [Fact]
    public void VisionMatmulParametersAreLayerMatricesAndThePatchConvolution()
    {
        var manifest = new WeightManifest("Tower",
        [
            new WeightEntry("p", [4, 3, 2, 2], WeightRole.Vision, WeightSite.Vision, -1, -1),   // patch conv: 48
            new WeightEntry("q", [5, 4], WeightRole.Vision, WeightSite.Vision, -1, -1),         // position table: 20
            new WeightEntry("n", [4], WeightRole.Vision, WeightSite.Vision, -1, -1),            // pre-norm: 4
            new WeightEntry("m", [4, 4], WeightRole.Vision, WeightSite.Vision, 0, -1),          // layer matrix: 16
            new WeightEntry("b", [4], WeightRole.Vision, WeightSite.Vision, 0, -1),             // layer bias: 4
            new WeightEntry("j", [8, 4], WeightRole.Projector, WeightSite.Projector, -1, -1),   // projector: 32
        ], []);
        var budget = new WeightBudget(manifest, Description);
        Assert.Equal(92, budget.VisionParameters);
        Assert.Equal(64, budget.VisionMatmulParameters);
        Assert.Equal(32, budget.ProjectorParameters);
        Assert.Equal(2.0 * 64 * 5 + 2.0 * 32 * 4, budget.VisionFlops(positions: 5, imageTokens: 4));
    }

    [Fact]
    public void AHandBuiltEntryTakesItsSiteFromItsRoleAndNoLayerOrExpert()
    {
        Assert.Equal(new WeightEntry("v", [2], WeightRole.Vision, WeightSite.Vision, -1, -1), new WeightEntry("v", [2], WeightRole.Vision));
        Assert.Equal(WeightSite.Projector, new WeightEntry("p", [2], WeightRole.Projector).Site);
        Assert.Equal(WeightSite.Llm, new WeightEntry("e", [2], WeightRole.Expert).Site);
        Assert.NotEqual(new WeightEntry("e", [2], WeightRole.Expert, WeightSite.Llm, 0, 1), new WeightEntry("e", [2], WeightRole.Expert, WeightSite.Llm, 0, 2));
    }
}
