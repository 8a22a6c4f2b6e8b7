using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Emit
{
    /// <summary>
    /// Checkpoint key names of a variant, by LLM family and checkpoint layout (REFERENCE §3). The weight plan (manifest,
    /// parameter counts) and the emitted constructors both take their names from here, so they cannot disagree.
    /// </summary>
    internal sealed class CheckpointNames
    {
        private readonly VariantModel _variant;

        public CheckpointNames(VariantModel variant) => _variant = variant;

        private LlmFamily Family => _variant.Llm.Family;
        private bool IsQwen => Family == LlmFamily.Qwen;
        private bool IsPhi => Family == LlmFamily.Phi;
        public bool MixtralMoe => Family == LlmFamily.Mixtral;

        public string LlmPrefix => IsQwen ? "transformer." : "model.";
        public string LayerPrefix(int layer) => IsQwen ? "transformer.h." + SourceWriter.Int(layer) + "." : "model.layers." + SourceWriter.Int(layer) + ".";
        public string LayerPrefixPattern => IsQwen ? "transformer.h.{i}." : "model.layers.{i}.";
        public string Embedding => LlmPrefix + (IsQwen ? "wte.weight" : "embed_tokens.weight");
        public string FinalNorm => IsQwen ? "transformer.ln_f" : IsPhi ? "model.final_layernorm" : "model.norm";
        public string LmHead => "lm_head";

        public string InputNorm => IsQwen ? "ln_1" : "input_layernorm";
        public string PostAttentionNorm => IsQwen ? "ln_2" : "post_attention_layernorm";

        /// <summary>Qwen stores q|k|v as one [3·H, H] matrix.</summary>
        public bool FusedQkv => IsQwen;
        public string FusedQkvName => "attn.c_attn";
        public string QName => "self_attn.q_proj";
        public string KName => "self_attn.k_proj";
        public string VName => "self_attn.v_proj";
        public string OutName => IsQwen ? "attn.c_proj" : IsPhi ? "self_attn.dense" : "self_attn.o_proj";

        public string DenseMlp => "mlp.";

        /// <summary>Names of the FFN linears relative to its prefix: (first, second, output) for the family's FFN.</summary>
        public (string A, string B, string Out) FfnParts => _variant.Llm.FfnKind switch
        {
            FfnKind.QwenSwiGlu => ("w1", "w2", "c_proj"),
            FfnKind.GeluTanh => ("fc1", "fc2", ""),
            FfnKind.SwiGlu => ("gate_proj", "up_proj", "down_proj"),
            _ => throw new System.ArgumentOutOfRangeException(nameof(FfnKind)),
        };

        /// <summary>Mixtral's expert names: w1 = gate, w3 = up, w2 = down.</summary>
        public (string A, string B, string Out) MixtralExpertParts => ("w1", "w3", "w2");

        public string Router => MixtralMoe ? "block_sparse_moe.gate" : "mlp.deepspeed_moe.gate.wg";
        public string ExpertPrefix => MixtralMoe ? "block_sparse_moe.experts." : "mlp.deepspeed_moe.experts.deepspeed_experts.";
        public string ResidualMlp => "mlp.mlp.";
        public string ResidualCoefficient => "mlp.coefficient";

        public string VisionPrefix => _variant.Layout == CheckpointLayout.CuMo
            ? "model.vision_tower.vision_model."
            : LlmPrefix + "image_tower.image_tower.vision_model.";

        public string VisionLayerPrefix(int layer) => VisionPrefix + "encoder.layers." + SourceWriter.Int(layer) + ".";
        public string VisionLayerPattern => VisionPrefix + "encoder.layers.{i}.";

        /// <summary>CuMo's sparse CLIP MLP: router and experts sit directly in the encoder layer.</summary>
        public string VisionRouter => "gate";
        public string VisionExpertPrefix => "experts.";

        public string ProjectorPrefix => _variant.Layout == CheckpointLayout.CuMo ? "model.mm_projector." : LlmPrefix + "mm_projector.image_spatial_proj.";
        public string ProjectorRouter => "model.mm_projector.gate";
        public string ProjectorExpertPrefix => "model.mm_projector.experts.";
    }
}
