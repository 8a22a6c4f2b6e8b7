using System.Collections.Generic;
using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Emit
{
    /// <summary>One tensor of the manifest, with what the parameter counts need to know about it.</summary>
    internal sealed class PlannedTensor
    {
        public PlannedTensor(string key, int[] shape, string role, string site, int expert, int topK)
        {
            Key = key;
            Shape = shape;
            Role = role;
            Site = site;
            Expert = expert;
            TopK = topK;
        }

        public string Key { get; }
        public int[] Shape { get; }
        /// <summary>A member name of MoeCompiler.Runtime.Checkpoints.WeightRole.</summary>
        public string Role { get; }
        /// <summary>"llm", "vision" or "projector".</summary>
        public string Site { get; }
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
        private readonly VariantModel _v;
        private readonly CheckpointNames _n;

        public WeightPlan(VariantModel variant)
        {
            _v = variant;
            _n = new CheckpointNames(variant);
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
        public long Llm => Sum("llm", activatedOnly: false);
        public long LlmActivated => Sum("llm", activatedOnly: true);
        public long Vision => Sum("vision", activatedOnly: false);
        public long VisionActivated => Sum("vision", activatedOnly: true);
        public long Projector => Sum("projector", activatedOnly: false);
        public long ProjectorActivated => Sum("projector", activatedOnly: true);

        private long Sum(string? site, bool activatedOnly)
        {
            long n = 0;
            foreach (var t in _tensors)
            {
                if (site is not null && t.Site != site) continue;
                if (activatedOnly && t.Idle) continue;
                n += t.Elements;
            }

            return n;
        }

        private void Add(string key, string role, string site, params int[] shape) => _tensors.Add(new PlannedTensor(key, shape, role, site, -1, 0));

        private void AddLinear(string name, int outFeatures, int inFeatures, bool bias, string role, string site, int expert = -1, int topK = 0)
        {
            _tensors.Add(new PlannedTensor(name + ".weight", new[] { outFeatures, inFeatures }, role, site, expert, topK));
            if (bias) _tensors.Add(new PlannedTensor(name + ".bias", new[] { outFeatures }, role, site, expert, topK));
        }

        private void AddNorm(string name, int width, bool layerNorm, string role, string site)
        {
            Add(name + ".weight", role, site, width);
            if (layerNorm) Add(name + ".bias", role, site, width);
        }

        private void PlanLlm()
        {
            LlmModel llm = _v.Llm;
            int h = llm.HiddenSize;
            int qDim = llm.Heads * llm.HeadDim;
            int kvDim = llm.KvHeads * llm.HeadDim;
            bool layerNorm = Profiles.Of(llm.Norm).HasBias;
            Add(_n.Embedding, "Embedding", "llm", llm.VocabSize, h);
            for (int layer = 0; layer < llm.Layers; layer++)
            {
                string p = _n.LayerPrefix(layer);
                AddNorm(p + _n.InputNorm, h, layerNorm, "Norm", "llm");
                if (_n.FusedQkv)
                {
                    AddLinear(p + _n.FusedQkvName, qDim + 2 * kvDim, h, llm.QkvBias, "Attention", "llm");
                }
                else
                {
                    AddLinear(p + _n.QName, qDim, h, llm.QkvBias, "Attention", "llm");
                    AddLinear(p + _n.KName, kvDim, h, llm.QkvBias, "Attention", "llm");
                    AddLinear(p + _n.VName, kvDim, h, llm.QkvBias, "Attention", "llm");
                }

                AddLinear(p + _n.OutName, h, qDim, llm.AttnOutBias, "Attention", "llm");
                if (!llm.ParallelResidual) AddNorm(p + _n.PostAttentionNorm, h, layerNorm, "Norm", "llm");
                if (_v.IsMoeLayer(layer))
                {
                    MoeModel moe = _v.Moe!;
                    AddLinear(p + _n.Router, moe.Experts, h, false, "Router", "llm");
                    for (int e = 0; e < moe.Experts; e++)
                    {
                        AddFeedForward(p + _n.ExpertPrefix + SourceWriter.Int(e) + ".", "Expert", e, moe.TopK, expertNames: true);
                    }

                    if (moe.Residual)
                    {
                        AddFeedForward(p + _n.ResidualMlp, "FeedForward", -1, 0, expertNames: false);
                        AddLinear(p + _n.ResidualCoefficient, 2, h, true, "Router", "llm");
                    }
                }
                else
                {
                    AddFeedForward(p + _n.DenseMlp, "FeedForward", -1, 0, expertNames: false);
                }
            }

            AddNorm(_n.FinalNorm, h, layerNorm, "Norm", "llm");
            AddLinear(_n.LmHead, llm.VocabSize, h, llm.LmHeadBias, "LmHead", "llm");
        }

        private void AddFeedForward(string prefix, string role, int expert, int topK, bool expertNames)
        {
            LlmModel llm = _v.Llm;
            int h = llm.HiddenSize, f = llm.FfnSize;
            var parts = expertNames ? _n.ExpertParts : _n.FfnParts;
            if (Profiles.Of(llm.FfnKind).Linears == 2)
            {
                AddLinear(prefix + parts.A, f, h, llm.MlpBias, role, "llm", expert, topK);
                AddLinear(prefix + parts.B, h, f, llm.MlpBias, role, "llm", expert, topK);
                return;
            }

            AddLinear(prefix + parts.A, f, h, llm.MlpBias, role, "llm", expert, topK);
            AddLinear(prefix + parts.B, f, h, llm.MlpBias, role, "llm", expert, topK);
            AddLinear(prefix + parts.Out, h, f, llm.MlpBias, role, "llm", expert, topK);
        }

        private void PlanVision(VisionModel vision)
        {
            int c = vision.HiddenSize;
            string vp = _n.VisionPrefix;
            if (Profiles.Of(vision.Tower).ClassToken)
            {
                Add(vp + "embeddings.class_embedding", "Vision", "vision", c);
                Add(vp + "embeddings.patch_embedding.weight", "Vision", "vision", c, 3, vision.PatchSize, vision.PatchSize);
                Add(vp + "embeddings.position_embedding.weight", "Vision", "vision", vision.Patches + 1, c);
                AddNorm(vp + "pre_layrnorm", c, true, "Vision", "vision");
            }
            else
            {
                Add(vp + "embeddings.patch_embedding.weight", "Vision", "vision", c, 3, vision.PatchSize, vision.PatchSize);
                Add(vp + "embeddings.patch_embedding.bias", "Vision", "vision", c);
                Add(vp + "embeddings.position_embedding.weight", "Vision", "vision", vision.Patches, c);
            }

            for (int layer = 0; layer < vision.UsedLayers; layer++)
            {
                string p = _n.VisionLayerPrefix(layer);
                AddNorm(p + "layer_norm1", c, true, "Vision", "vision");
                foreach (string proj in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
                {
                    AddLinear(p + "self_attn." + proj, c, c, true, "Vision", "vision");
                }

                AddNorm(p + "layer_norm2", c, true, "Vision", "vision");
                if (vision.Moe is SideMoeModel moe)
                {
                    AddLinear(p + _n.VisionRouter, moe.Experts, c, false, "Vision", "vision");
                    for (int e = 0; e < moe.Experts; e++)
                    {
                        string ep = p + _n.VisionExpertPrefix + SourceWriter.Int(e) + ".";
                        AddLinear(ep + "fc1", vision.MlpSize, c, true, "Vision", "vision", e, moe.TopK);
                        AddLinear(ep + "fc2", c, vision.MlpSize, true, "Vision", "vision", e, moe.TopK);
                    }
                }
                else
                {
                    AddLinear(p + "mlp.fc1", vision.MlpSize, c, true, "Vision", "vision");
                    AddLinear(p + "mlp.fc2", c, vision.MlpSize, true, "Vision", "vision");
                }
            }
        }

        private void PlanProjector(VisionModel vision, ProjectorModel projector)
        {
            int input = vision.FeatureWidth;
            int h = _v.Llm.HiddenSize;
            if (projector.Moe is SideMoeModel moe)
            {
                AddLinear(_n.ProjectorRouter, moe.Experts, input, false, "Projector", "projector");
                for (int e = 0; e < moe.Experts; e++)
                {
                    string ep = _n.ProjectorExpertPrefix + SourceWriter.Int(e) + ".";
                    AddLinear(ep + "0", h, input, true, "Projector", "projector", e, moe.TopK);
                    AddLinear(ep + "2", h, h, true, "Projector", "projector", e, moe.TopK);
                }
            }
            else
            {
                AddLinear(_n.ProjectorPrefix + "0", h, input, true, "Projector", "projector");
                AddLinear(_n.ProjectorPrefix + "2", h, h, true, "Projector", "projector");
            }
        }

        /// <summary>
        /// Checkpoint keys that real checkpoints carry and this variant does not use: '*' matches any run of characters.
        /// </summary>
        public List<string> IgnoredKeys()
        {
            var keys = new List<string>();
            keys.Add("*.inv_freq");
            if (_v.Vision is VisionModel vision)
            {
                keys.Add(_n.VisionPrefix + "post_layernorm.*");
                keys.Add(_n.VisionPrefix + "embeddings.position_ids");
                if (Profiles.Of(vision.Tower).IgnoredKeys is string towerIgnored) keys.Add(_n.VisionPrefix + towerIgnored);
                for (int layer = vision.UsedLayers; layer < vision.Layers; layer++) keys.Add(_n.VisionLayerPrefix(layer) + "*");
            }

            if (Profiles.Of(_v.Llm.Family).MayIgnoreLmHeadBias && !_v.Llm.LmHeadBias) keys.Add("lm_head.bias");
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
