using System.Collections.Generic;
using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Emit
{
    /// <summary>The part of a variant a tensor belongs to; member names match MoeCompiler.Runtime.Checkpoints.WeightSite.</summary>
    internal enum TensorSite
    {
        Llm,
        Vision,
        Projector,
    }

    /// <summary>One tensor of the manifest, with what the parameter counts and the runtime's budget need to know about it.</summary>
    internal sealed class PlannedTensor
    {
        public PlannedTensor(string key, int[] shape, string role, TensorSite site, int layer, int expert, int topK)
        {
            Key = key;
            Shape = shape;
            Role = role;
            Site = site;
            Layer = layer;
            Expert = expert;
            TopK = topK;
        }

        public string Key { get; }
        public int[] Shape { get; }
        /// <summary>A member name of MoeCompiler.Runtime.Checkpoints.WeightRole.</summary>
        public string Role { get; }
        public TensorSite Site { get; }
        /// <summary>LLM decoder layer or vision encoder layer, or -1 outside the layers (embeddings, final norm, lm_head, projector).</summary>
        public int Layer { get; }
        /// <summary>Expert index within its MoE layer, or -1.</summary>
        public int Expert { get; }
        public int TopK { get; }

        public long Elements
        {
            get
            {
                long n = 1;
                foreach (int d in Shape) n *= d;
                return n;
            }
        }

        /// <summary>Only the top-k experts of a token run; experts with index ≥ k stand for the idle ones.</summary>
        public bool Idle => Expert >= TopK;
    }

    /// <summary>Every tensor a variant needs, in checkpoint order of appearance, and the counts derived from them.</summary>
    internal sealed class WeightPlan
    {
        private readonly List<PlannedTensor> _tensors = new List<PlannedTensor>();
        private readonly VariantModel _variant;
        private readonly CheckpointNames _names;
        /// <summary>The layer the loop of <see cref="PlanLlm"/> or <see cref="PlanVision"/> is planning, -1 outside the layers.</summary>
        private int _layer = -1;

        public WeightPlan(VariantModel variant)
        {
            _variant = variant;
            _names = new CheckpointNames(variant);
            PlanLlm();
            if (variant.Vision is VisionModel vision && variant.Projector is ProjectorModel projector)
            {
                PlanVision(vision);
                PlanProjector(vision, projector);
            }
        }

        public IReadOnlyList<PlannedTensor> Tensors => _tensors;

        public long Total => Sum(null, activatedOnly: false);
        public long Activated => Sum(null, activatedOnly: true);
        public long Llm => Sum(TensorSite.Llm, activatedOnly: false);
        public long LlmActivated => Sum(TensorSite.Llm, activatedOnly: true);
        public long Vision => Sum(TensorSite.Vision, activatedOnly: false);
        public long VisionActivated => Sum(TensorSite.Vision, activatedOnly: true);
        public long Projector => Sum(TensorSite.Projector, activatedOnly: false);
        public long ProjectorActivated => Sum(TensorSite.Projector, activatedOnly: true);

        private long Sum(TensorSite? site, bool activatedOnly)
        {
            long n = 0;
            foreach (var t in _tensors)
            {
                if (site is TensorSite only && t.Site != only) continue;
                if (activatedOnly && t.Idle) continue;
                n += t.Elements;
            }

            return n;
        }

        private void Add(string key, string role, TensorSite site, params int[] shape) => _tensors.Add(new PlannedTensor(key, shape, role, site, _layer, -1, 0));

        private void AddLinear(string name, int outFeatures, int inFeatures, bool bias, string role, TensorSite site, int expert = -1, int topK = 0)
        {
            _tensors.Add(new PlannedTensor(name + ".weight", new[] { outFeatures, inFeatures }, role, site, _layer, expert, topK));
            if (bias) _tensors.Add(new PlannedTensor(name + ".bias", new[] { outFeatures }, role, site, _layer, expert, topK));
        }

        private void AddNorm(string name, int width, bool layerNorm, string role, TensorSite site)
        {
            Add(name + ".weight", role, site, width);
            if (layerNorm) Add(name + ".bias", role, site, width);
        }

        private void PlanLlm()
        {
            LlmModel llm = _variant.Llm;
            int h = llm.HiddenSize;
            int qDim = llm.Heads * llm.HeadDim;
            int kvDim = llm.KvHeads * llm.HeadDim;
            bool layerNorm = Profiles.Of(llm.Norm).HasBias;
            Add(_names.Embedding, "Embedding", TensorSite.Llm, llm.VocabSize, h);
            for (int layer = 0; layer < llm.Layers; layer++)
            {
                _layer = layer;
                string p = _names.LayerPrefix(layer);
                AddNorm(p + _names.InputNorm, h, layerNorm, "Norm", TensorSite.Llm);
                if (_names.FusedQkv)
                {
                    AddLinear(p + _names.FusedQkvName, qDim + 2 * kvDim, h, llm.QkvBias, "Attention", TensorSite.Llm);
                }
                else
                {
                    AddLinear(p + _names.QName, qDim, h, llm.QkvBias, "Attention", TensorSite.Llm);
                    AddLinear(p + _names.KName, kvDim, h, llm.QkvBias, "Attention", TensorSite.Llm);
                    AddLinear(p + _names.VName, kvDim, h, llm.QkvBias, "Attention", TensorSite.Llm);
                }

                AddLinear(p + _names.OutName, h, qDim, llm.AttnOutBias, "Attention", TensorSite.Llm);
                if (!llm.ParallelResidual) AddNorm(p + _names.PostAttentionNorm, h, layerNorm, "Norm", TensorSite.Llm);
                if (_variant.IsMoeLayer(layer))
                {
                    MoeModel moe = _variant.Moe!;
                    AddLinear(p + _names.Router, moe.Experts, h, false, "Router", TensorSite.Llm);
                    for (int e = 0; e < moe.Experts; e++)
                    {
                        AddFeedForward(p + _names.ExpertPrefix + SourceWriter.Int(e) + ".", "Expert", e, moe.TopK, expertNames: true);
                    }

                    if (moe.Residual)
                    {
                        AddFeedForward(p + _names.ResidualMlp, "FeedForward", -1, 0, expertNames: false);
                        AddLinear(p + _names.ResidualCoefficient, 2, h, true, "Router", TensorSite.Llm);
                    }
                }
                else
                {
                    AddFeedForward(p + _names.DenseMlp, "FeedForward", -1, 0, expertNames: false);
                }
            }

            _layer = -1;
            AddNorm(_names.FinalNorm, h, layerNorm, "Norm", TensorSite.Llm);
            AddLinear(_names.LmHead, llm.VocabSize, h, llm.LmHeadBias, "LmHead", TensorSite.Llm);
        }

        private void AddFeedForward(string prefix, string role, int expert, int topK, bool expertNames)
        {
            LlmModel llm = _variant.Llm;
            int h = llm.HiddenSize, f = llm.FfnSize;
            var parts = expertNames ? _names.ExpertParts : _names.FfnParts;
            if (Profiles.Of(llm.FfnKind).Linears == 2)
            {
                AddLinear(prefix + parts.A, f, h, llm.MlpBias, role, TensorSite.Llm, expert, topK);
                AddLinear(prefix + parts.B, h, f, llm.MlpBias, role, TensorSite.Llm, expert, topK);
                return;
            }

            AddLinear(prefix + parts.A, f, h, llm.MlpBias, role, TensorSite.Llm, expert, topK);
            AddLinear(prefix + parts.B, f, h, llm.MlpBias, role, TensorSite.Llm, expert, topK);
            AddLinear(prefix + parts.Out, h, f, llm.MlpBias, role, TensorSite.Llm, expert, topK);
        }

        private void PlanVision(VisionModel vision)
        {
            int c = vision.HiddenSize;
            string vp = _names.VisionPrefix;
            if (Profiles.Of(vision.Tower).ClassToken)
            {
                Add(vp + "embeddings.class_embedding", "Vision", TensorSite.Vision, c);
                Add(vp + "embeddings.patch_embedding.weight", "Vision", TensorSite.Vision, c, 3, vision.PatchSize, vision.PatchSize);
                Add(vp + "embeddings.position_embedding.weight", "Vision", TensorSite.Vision, vision.Patches + 1, c);
                AddNorm(vp + "pre_layrnorm", c, true, "Vision", TensorSite.Vision);
            }
            else
            {
                Add(vp + "embeddings.patch_embedding.weight", "Vision", TensorSite.Vision, c, 3, vision.PatchSize, vision.PatchSize);
                Add(vp + "embeddings.patch_embedding.bias", "Vision", TensorSite.Vision, c);
                Add(vp + "embeddings.position_embedding.weight", "Vision", TensorSite.Vision, vision.Patches, c);
            }

            for (int layer = 0; layer < vision.UsedLayers; layer++)
            {
                _layer = layer;
                string p = _names.VisionLayerPrefix(layer);
                AddNorm(p + "layer_norm1", c, true, "Vision", TensorSite.Vision);
                foreach (string proj in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
                {
                    AddLinear(p + "self_attn." + proj, c, c, true, "Vision", TensorSite.Vision);
                }

                AddNorm(p + "layer_norm2", c, true, "Vision", TensorSite.Vision);
                if (vision.Moe is SideMoeModel moe)
                {
                    AddLinear(p + _names.VisionRouter, moe.Experts, c, false, "Vision", TensorSite.Vision);
                    for (int e = 0; e < moe.Experts; e++)
                    {
                        string ep = p + _names.VisionExpertPrefix + SourceWriter.Int(e) + ".";
                        AddLinear(ep + "fc1", vision.MlpSize, c, true, "Vision", TensorSite.Vision, e, moe.TopK);
                        AddLinear(ep + "fc2", c, vision.MlpSize, true, "Vision", TensorSite.Vision, e, moe.TopK);
                    }
                }
                else
                {
                    AddLinear(p + "mlp.fc1", vision.MlpSize, c, true, "Vision", TensorSite.Vision);
                    AddLinear(p + "mlp.fc2", c, vision.MlpSize, true, "Vision", TensorSite.Vision);
                }
            }

            _layer = -1;
        }

        private void PlanProjector(VisionModel vision, ProjectorModel projector)
        {
            int input = vision.FeatureWidth;
            int h = _variant.Llm.HiddenSize;
            if (projector.Moe is SideMoeModel moe)
            {
                AddLinear(_names.ProjectorRouter, moe.Experts, input, false, "Projector", TensorSite.Projector);
                for (int e = 0; e < moe.Experts; e++)
                {
                    string ep = _names.ProjectorExpertPrefix + SourceWriter.Int(e) + ".";
                    AddLinear(ep + "0", h, input, true, "Projector", TensorSite.Projector, e, moe.TopK);
                    AddLinear(ep + "2", h, h, true, "Projector", TensorSite.Projector, e, moe.TopK);
                }
            }
            else
            {
                AddLinear(_names.ProjectorPrefix + "0", h, input, true, "Projector", TensorSite.Projector);
                AddLinear(_names.ProjectorPrefix + "2", h, h, true, "Projector", TensorSite.Projector);
            }
        }

        /// <summary>
        /// Checkpoint keys that real checkpoints carry and this variant does not use: '*' matches any run of characters.
        /// </summary>
        public List<string> IgnoredKeys()
        {
            var keys = new List<string>();
            keys.Add("*.inv_freq");
            if (_variant.Vision is VisionModel vision)
            {
                keys.Add(_names.VisionPrefix + "post_layernorm.*");
                keys.Add(_names.VisionPrefix + "embeddings.position_ids");
                if (Profiles.Of(vision.Tower).IgnoredKeys is string towerIgnored) keys.Add(_names.VisionPrefix + towerIgnored);
                for (int layer = vision.UsedLayers; layer < vision.Layers; layer++) keys.Add(_names.VisionLayerPrefix(layer) + "*");
            }

            if (Profiles.Of(_variant.Llm.Family).MayIgnoreLmHeadBias && !_variant.Llm.LmHeadBias) keys.Add("lm_head.bias");
            return keys;
        }

        /// <summary>
        /// The MoE-LLaVA paper's count (appendix A.1): V·W + L(4W² + W·F·f + 2W) + W + W·V + M(E−1)(W·F·f + 2W) + M·W·E,
        /// with E := top-k for the activated count. LLM only; ignores biases, GQA and the vision side.
        /// </summary>
        public static long PaperFormula(VariantModel v, bool activated)
        {
            LlmModel llm = v.Llm;
            long V = llm.VocabSize, W = llm.HiddenSize, L = llm.Layers, F = llm.FfnSize;
            long f = Profiles.Of(llm.FfnKind).Linears;
            long M = v.Moe?.Layers.Count ?? 0;
            long E = v.Moe is null ? 1 : activated ? v.Moe.TopK : v.Moe.Experts;
            return V * W + L * (4 * W * W + W * F * f + 2 * W) + W + W * V + M * (E - 1) * (W * F * f + 2 * W) + M * W * E;
        }
    }
}
