using System;

namespace MoeCompiler.Generators.Model
{
    /// <summary>
    /// What a spec's FFN kind means for the checkpoint and the generated code: the runtime module, its linears'
    /// key names relative to the FFN prefix, and (for the two-linear kind) the activation between them.
    /// </summary>
    internal sealed record FfnProfile(FfnKind Kind, string SpecName, string ModuleType, string First, string Second, string Output, string? Activation)
    {
        /// <summary>Linears per FFN: two for GELU (fc1, fc2), three for the gated kinds (the paper formula's f).</summary>
        public int Linears => Activation is null ? 3 : 2;
    }

    /// <summary>A norm kind: the runtime module, the emitted factory, and whether it has a bias.</summary>
    internal sealed record NormProfile(NormKind Kind, string SpecName, string ModuleType, string Factory, bool HasBias);

    /// <summary>
    /// Everything the generator knows about one LLM family, in one place: checkpoint key names (of the reference
    /// implementations: Hugging Face StableLM/Mistral/Mixtral/Phi modelling code, Qwen-1's modeling_qwen.py, the
    /// MoE-LLaVA DeepSpeed MoE layer), the FFN it must have, block layout and the combinations it allows.
    /// The parser checks specs against it, the weight plan and <see cref="Emit.CheckpointNames"/> take key names
    /// from it, the emitter picks modules by it. Adding a family is an enum value, a profile here, and its tests.
    /// </summary>
    internal sealed record FamilyProfile
    {
        public LlmFamily Family { get; init; }
        public string SpecName { get; init; } = "";
        /// <summary>Name used in diagnostics ("Qwen's fused c_attn projection ...").</summary>
        public string DisplayName { get; init; } = "";
        /// <summary>The FFN kind the family's checkpoints have (any other is MOE017).</summary>
        public FfnKind Ffn { get; init; }

        /// <summary>Prefix of every LLM key ("model." or Qwen's "transformer.").</summary>
        public string LlmPrefix { get; init; } = "model.";
        /// <summary>Prefix of layer i's keys, without the index ("model.layers." + i + ".").</summary>
        public string LayerPrefix { get; init; } = "model.layers.";
        public string Embedding { get; init; } = "embed_tokens.weight";
        public string FinalNorm { get; init; } = "model.norm";
        public string InputNorm { get; init; } = "input_layernorm";
        public string PostAttentionNorm { get; init; } = "post_attention_layernorm";

        /// <summary>q|k|v stored as one [3·H, H] matrix under <see cref="FusedQkvName"/> (then kvHeads must equal heads).</summary>
        public bool FusedQkv { get; init; }
        public string FusedQkvName { get; init; } = "attn.c_attn";
        public string AttentionOut { get; init; } = "self_attn.o_proj";

        /// <summary>One shared norm and attention ∥ MLP (Phi): the spec must say llm.parallelResidual true.</summary>
        public bool ParallelResidual { get; init; }

        /// <summary>The MoE layer's router and experts, relative to the layer prefix.</summary>
        public string Router { get; init; } = "mlp.deepspeed_moe.gate.wg";
        public string ExpertPrefix { get; init; } = "mlp.deepspeed_moe.experts.deepspeed_experts.";
        /// <summary>Names of an expert's linears (gate, up, down) when they differ from the dense FFN's (Mixtral: w1, w3, w2).</summary>
        public (string First, string Second, string Output)? ExpertParts { get; init; }
        /// <summary>The module that holds the experts, for diagnostics.</summary>
        public string MoeModule { get; init; } = "deepspeed_moe";
        /// <summary>Whether checkpoints can carry a PR-MoE residual MLP beside the experts.</summary>
        public bool ResidualMoe { get; init; } = true;
        public RoutingKind DefaultRouting { get; init; } = RoutingKind.DeepSpeed;

        /// <summary>Released checkpoints carry an lm_head.bias the spec may leave unused (Phi-2's head has one).</summary>
        public bool MayIgnoreLmHeadBias { get; init; }
    }

    /// <summary>A vision tower: the structural switches of its embeddings and layers, and its preprocessing.</summary>
    internal sealed record TowerProfile(
        VisionTowerKind Kind,
        string SpecName,
        string EmbeddingsModule,
        // CLIP: a class token, its row in the position table, and pre_layrnorm before the encoder.
        bool ClassToken,
        // SigLIP: the patch convolution has a bias.
        bool PatchEmbeddingBias,
        // Runtime Activation member of the encoder MLP.
        string Activation,
        string ImageMean,
        string ImageStd,
        // Keys under the vision prefix the tower does not use (besides post_layernorm and position_ids).
        string? IgnoredKeys,
        // What "patch" feature selection drops (row 0), for the generated comment.
        string FirstRowNote);

    /// <summary>The profile tables: one entry per family, FFN kind, norm kind and tower.</summary>
    internal static class Profiles
    {
        public static readonly FamilyProfile[] Families =
        {
            new FamilyProfile { Family = LlmFamily.StableLm, SpecName = "stablelm", DisplayName = "StableLM", Ffn = FfnKind.SwiGlu },
            new FamilyProfile
            {
                Family = LlmFamily.Qwen, SpecName = "qwen", DisplayName = "Qwen", Ffn = FfnKind.QwenSwiGlu,
                LlmPrefix = "transformer.", LayerPrefix = "transformer.h.", Embedding = "wte.weight", FinalNorm = "transformer.ln_f",
                InputNorm = "ln_1", PostAttentionNorm = "ln_2", FusedQkv = true, AttentionOut = "attn.c_proj",
            },
            new FamilyProfile
            {
                Family = LlmFamily.Phi, SpecName = "phi", DisplayName = "Phi", Ffn = FfnKind.GeluTanh,
                FinalNorm = "model.final_layernorm", AttentionOut = "self_attn.dense", ParallelResidual = true, MayIgnoreLmHeadBias = true,
            },
            new FamilyProfile { Family = LlmFamily.Mistral, SpecName = "mistral", DisplayName = "Mistral", Ffn = FfnKind.SwiGlu },
            new FamilyProfile
            {
                Family = LlmFamily.Mixtral, SpecName = "mixtral", DisplayName = "Mixtral", Ffn = FfnKind.SwiGlu,
                Router = "block_sparse_moe.gate", ExpertPrefix = "block_sparse_moe.experts.", ExpertParts = ("w1", "w3", "w2"),
                MoeModule = "block_sparse_moe", ResidualMoe = false, DefaultRouting = RoutingKind.Mixtral,
            },
        };

        public static readonly FfnProfile[] FfnKinds =
        {
            new FfnProfile(FfnKind.SwiGlu, "swiglu", "SwiGluFeedForward", "gate_proj", "up_proj", "down_proj", null),
            new FfnProfile(FfnKind.QwenSwiGlu, "qwen-swiglu", "QwenFeedForward", "w1", "w2", "c_proj", null),
            new FfnProfile(FfnKind.GeluTanh, "gelu-tanh", "GeluFeedForward", "fc1", "fc2", "", "GeluTanh"),
        };

        public static readonly NormProfile[] Norms =
        {
            new NormProfile(NormKind.LayerNorm, "layernorm", "LayerNorm", "LayerNormAt", HasBias: true),
            new NormProfile(NormKind.RmsNorm, "rmsnorm", "RmsNorm", "RmsNormAt", HasBias: false),
        };

        public static readonly TowerProfile[] Towers =
        {
            new TowerProfile(VisionTowerKind.Clip, "clip", "ClipVisionEmbeddings", ClassToken: true, PatchEmbeddingBias: false, "QuickGelu",
                "0.48145466f, 0.4578275f, 0.40821073f", "0.26862954f, 0.26130258f, 0.27577711f", IgnoredKeys: null, "the CLS token"),
            new TowerProfile(VisionTowerKind.Siglip, "siglip", "SiglipVisionEmbeddings", ClassToken: false, PatchEmbeddingBias: true, "GeluTanh",
                "0.5f, 0.5f, 0.5f", "0.5f, 0.5f, 0.5f", IgnoredKeys: "head.*", "the first patch, as the reference does"),
        };

        public static FamilyProfile Of(LlmFamily family) => Find(Families, p => p.Family == family, family);
        public static FfnProfile Of(FfnKind kind) => Find(FfnKinds, p => p.Kind == kind, kind);
        public static NormProfile Of(NormKind kind) => Find(Norms, p => p.Kind == kind, kind);
        public static TowerProfile Of(VisionTowerKind kind) => Find(Towers, p => p.Kind == kind, kind);

        private static T Find<T>(T[] table, Func<T, bool> match, object key)
        {
            foreach (T profile in table)
            {
                if (match(profile)) return profile;
            }

            throw new ArgumentOutOfRangeException(nameof(key), key, "no profile for this " + key.GetType().Name);
        }
    }
}
