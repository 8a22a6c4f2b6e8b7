using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// One tensor a variant needs: its checkpoint key, its shape, what it is for, and where it sits: the part of the model
/// (<see cref="Site"/>), the layer of that part (<see cref="Layer"/>: the LLM decoder layer or the vision encoder
/// layer; −1 outside the layers: embeddings, final norm, lm_head, projector) and the expert index within its MoE
/// layer (<see cref="Expert"/>, −1 for a tensor that is not an expert's). The generator emits all six from its weight
/// plan; hand-built manifests may give the first three only (the site follows from the role, no layer, no expert).
/// </summary>
public sealed record WeightEntry(string Key, int[] Shape, WeightRole Role, WeightSite Site, int Layer, int Expert)
{
    /// <summary>An entry outside any layer and not an expert's, its site implied by its role.</summary>
    public WeightEntry(string key, int[] shape, WeightRole role) : this(key, shape, role, SiteOf(role), -1, -1)
    {
    }

    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (int d in Shape) n *= d;
            return n;
        }
    }

    /// <summary>The site of a weight with this role when nothing else says: vision and projector roles name their
    /// part; every other role is the LLM's.</summary>
    public static WeightSite SiteOf(WeightRole role) => role switch
    {
        WeightRole.Vision => WeightSite.Vision,
        WeightRole.Projector => WeightSite.Projector,
        _ => WeightSite.Llm,
    };

    public bool Equals(WeightEntry? other) =>
        other is not null && Key == other.Key && Role == other.Role && Site == other.Site && Layer == other.Layer &&
        Expert == other.Expert && Shape.AsSpan().SequenceEqual(other.Shape);

    public override int GetHashCode() => HashCode.Combine(Key, Role, Site, Layer, Expert, Shape.Length);
}

/// <summary>The part of a variant a weight belongs to (the same parts as <c>RoutingSites</c>).</summary>
public enum WeightSite
{
    Llm,
    Vision,
    Projector,
}

public enum WeightRole
{
    Embedding,
    Norm,
    Attention,
    FeedForward,
    Router,
    Expert,
    LmHead,
    Vision,
    Projector,
}

/// <summary>
/// Every tensor of one variant, emitted by the generator. <see cref="IgnoredKeys"/> lists checkpoint keys that
/// are known to be present and harmless (Phi-2's lm_head.bias, rotary buffers): patterns with '*' wildcards.
/// </summary>
public sealed class WeightManifest
{
    public WeightManifest(string variant, IReadOnlyList<WeightEntry> entries, IReadOnlyList<string> ignoredKeys)
    {
        Variant = variant;
        Entries = entries;
        IgnoredKeys = ignoredKeys;
    }

    public string Variant { get; }
    public IReadOnlyList<WeightEntry> Entries { get; }
    public IReadOnlyList<string> IgnoredKeys { get; }

    public long TotalParameters
    {
        get
        {
            long n = 0;
            foreach (var e in Entries) n += e.ElementCount;
            return n;
        }
    }
}

/// <summary>The tensors of a checkpoint bound to a manifest, by key, ready for the modules.</summary>
public interface IBoundWeights
{
    Tensor this[string key] { get; }
    bool Contains(string key);
}
