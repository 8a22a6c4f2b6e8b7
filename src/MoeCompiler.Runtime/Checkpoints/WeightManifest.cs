using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>One tensor a variant needs: its checkpoint key, its shape and what it is for.</summary>
public sealed record WeightEntry(string Key, int[] Shape, WeightRole Role)
{
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (int d in Shape) n *= d;
            return n;
        }
    }

    public bool Equals(WeightEntry? other) =>
        other is not null && Key == other.Key && Role == other.Role && Shape.AsSpan().SequenceEqual(other.Shape);

    public override int GetHashCode() => HashCode.Combine(Key, Role, Shape.Length);
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
