using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Modules;

namespace MoeCompiler.Runtime.Diagnostics;

/// <summary>
/// What one token costs in weights, from the manifest: the bytes decode must stream per token (the shared LLM
/// weights, lm_head, one embedding row and top-k experts per MoE layer) and the useful FLOPs of a prefill.
/// Also counts the weight bytes a run actually touched, given its routing decisions.
/// </summary>
public sealed class WeightBudget
{
    private readonly List<WeightEntry> _experts = [];
    private readonly int _hidden;
    private readonly int _topK;

    public WeightBudget(WeightManifest manifest, ModelDescription description, int bytesPerParameter = 2)
    {
        BytesPerParameter = bytesPerParameter;
        _hidden = description.HiddenSize;
        _topK = description.TopK;
        foreach (var entry in manifest.Entries)
        {
            long n = entry.ElementCount;
            TotalParameters += n;
            switch (entry.Role)
            {
                case WeightRole.Vision:
                    VisionParameters += n;
                    if (IsPerPatchMatrix(entry)) VisionMatmulParameters += n;
                    break;
                case WeightRole.Projector: ProjectorParameters += n; break;
                case WeightRole.Embedding: EmbeddingParameters += n; break;
                case WeightRole.LmHead: LmHeadParameters += n; break;
                case WeightRole.Expert when entry.Layer >= 0 && entry.Expert >= 0:
                    _experts.Add(entry);
                    ExpertParameters += n;
                    // The generator's rule (WeightPlan): a token runs top-k of equal experts; indices ≥ k stand for the idle ones.
                    if (entry.Expert < _topK) ActivatedExpertParameters += n;
                    break;
                default: SharedLlmParameters += n; break; // an expert without layer and index (a hand-built manifest) counts as always read
            }
        }
    }

    /// <summary>A vision weight multiplied with every patch: an encoder layer's matrices and the patch convolution
    /// (the only rank-4 tensor); position and class embeddings and norms outside the layers are added, not multiplied.</summary>
    private static bool IsPerPatchMatrix(WeightEntry entry) =>
        entry.Shape.Length >= 2 && (entry.Layer >= 0 || entry.Shape.Length == 4);

    public int BytesPerParameter { get; }
    public long TotalParameters { get; }
    public long VisionParameters { get; }
    /// <summary>Vision weights used as matrices once per patch (patch conv, attention, MLP); not position tables.</summary>
    public long VisionMatmulParameters { get; }
    public long ProjectorParameters { get; }
    public long EmbeddingParameters { get; }
    public long LmHeadParameters { get; }
    /// <summary>LLM weights every token reads: attention, norms, dense FFNs, routers.</summary>
    public long SharedLlmParameters { get; }
    public long ExpertParameters { get; }
    /// <summary>Top-k experts of every MoE layer.</summary>
    public long ActivatedExpertParameters { get; }

    /// <summary>LLM parameters one token multiplies with (embedding lookup excluded).</summary>
    public long ActivatedLlmMatmulParameters => SharedLlmParameters + ActivatedExpertParameters + LmHeadParameters;

    /// <summary>Weight bytes one decode step must read: activated LLM weights plus one embedding row.</summary>
    public long DecodeBytesPerToken => (ActivatedLlmMatmulParameters + _hidden) * BytesPerParameter;

    /// <summary>Useful prefill FLOPs: every row through the activated layers, lm_head for the last row only.</summary>
    public double PrefillFlops(int rows) =>
        2.0 * (SharedLlmParameters + ActivatedExpertParameters) * rows + 2.0 * LmHeadParameters;

    /// <summary>≈ vision tower + projector FLOPs for one image (matrices once per position, attention scores excluded).</summary>
    public double VisionFlops(int positions, int imageTokens) =>
        2.0 * VisionMatmulParameters * positions + 2.0 * ProjectorParameters * imageTokens;

    /// <summary>Weight bytes read at least once by a run: everything shared, the vision side, the experts that
    /// received a token, the lm_head and the embedding rows looked up.</summary>
    public long TouchedBytes(IEnumerable<RoutingRecord> records, int distinctTokenIds)
    {
        var used = new HashSet<(int Layer, int Expert)>();
        foreach (var r in records)
        {
            if (r.Site != RoutingSites.Llm) continue;
            foreach (int e in r.ChosenExperts) if (e >= 0) used.Add((r.Layer, e));
        }
        long parameters = SharedLlmParameters + VisionParameters + ProjectorParameters + LmHeadParameters + (long)distinctTokenIds * _hidden;
        foreach (var entry in _experts)
            if (used.Contains((entry.Layer, entry.Expert))) parameters += entry.ElementCount;
        return parameters * BytesPerParameter;
    }

    /// <summary>(MoE layers, experts) pairs that received at least one token.</summary>
    public static int UsedExperts(IEnumerable<RoutingRecord> records)
    {
        var used = new HashSet<(int, int)>();
        foreach (var r in records)
            if (r.Site == RoutingSites.Llm)
                foreach (int e in r.ChosenExperts) if (e >= 0) used.Add((r.Layer, e));
        return used.Count;
    }
}
