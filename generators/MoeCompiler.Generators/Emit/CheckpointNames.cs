using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Emit
{
    /// <summary>
    /// Checkpoint key names of a variant: the family's (<see cref="FamilyProfile"/>), the FFN kind's and the checkpoint
    /// layout's. The weight plan (manifest, parameter counts) and the emitted constructors both take their names from
    /// here, so they cannot disagree.
    /// </summary>
    internal sealed class CheckpointNames
    {
        private readonly VariantModel _variant;
        private readonly FamilyProfile _family;
        private readonly FfnProfile _ffn;

        public CheckpointNames(VariantModel variant)
        {
            _variant = variant;
            _family = Profiles.Of(variant.Llm.Family);
            _ffn = Profiles.Of(variant.Llm.FfnKind);
        }

        public string LlmPrefix => _family.LlmPrefix;
        public string LayerPrefix(int layer) => _family.LayerPrefix + SourceWriter.Int(layer) + ".";
        public string LayerPrefixPattern => _family.LayerPrefix + "{i}.";
        public string Embedding => LlmPrefix + _family.Embedding;
        public string FinalNorm => _family.FinalNorm;
        public string LmHead => "lm_head";

        public string InputNorm => _family.InputNorm;
        public string PostAttentionNorm => _family.PostAttentionNorm;

        /// <summary>Qwen stores q|k|v as one [3·H, H] matrix.</summary>
        public bool FusedQkv => _family.FusedQkv;
        public string FusedQkvName => _family.FusedQkvName;
        public string QName => "self_attn.q_proj";
        public string KName => "self_attn.k_proj";
        public string VName => "self_attn.v_proj";
        public string OutName => _family.AttentionOut;

        public string DenseMlp => "mlp.";

        /// <summary>Names of the FFN linears relative to its prefix: (first, second, output) for the family's FFN.</summary>
        public (string A, string B, string Out) FfnParts => (_ffn.First, _ffn.Second, _ffn.Output);

        /// <summary>The family names its experts' linears its own way (Mixtral: w1 = gate, w3 = up, w2 = down).</summary>
        public bool OwnExpertNames => _family.ExpertParts is not null;

        /// <summary>Names of an expert's linears: the family's own, else the dense FFN's.</summary>
        public (string A, string B, string Out) ExpertParts => _family.ExpertParts is (string a, string b, string o) ? (a, b, o) : FfnParts;

        public string Router => _family.Router;
        public string ExpertPrefix => _family.ExpertPrefix;
        public string ResidualMlp => "mlp.mlp.";
        public string ResidualCoefficient => "mlp.coefficient";

        public string VisionPrefix => _variant.Layout switch
        {
            CheckpointLayout.CuMo => "model.vision_tower.vision_model.",
            CheckpointLayout.MoeLlava => LlmPrefix + "image_tower.image_tower.vision_model.",
            _ => throw new System.ArgumentOutOfRangeException(nameof(_variant.Layout)),
        };

        public string VisionLayerPrefix(int layer) => VisionPrefix + "encoder.layers." + SourceWriter.Int(layer) + ".";
        public string VisionLayerPattern => VisionPrefix + "encoder.layers.{i}.";

        /// <summary>CuMo's sparse CLIP MLP: router and experts sit directly in the encoder layer.</summary>
        public string VisionRouter => "gate";
        public string VisionExpertPrefix => "experts.";

        public string ProjectorPrefix => _variant.Layout switch
        {
            CheckpointLayout.CuMo => "model.mm_projector.",
            CheckpointLayout.MoeLlava => LlmPrefix + "mm_projector.image_spatial_proj.",
            _ => throw new System.ArgumentOutOfRangeException(nameof(_variant.Layout)),
        };

        public string ProjectorRouter => "model.mm_projector.gate";
        public string ProjectorExpertPrefix => "model.mm_projector.experts.";
    }
}
