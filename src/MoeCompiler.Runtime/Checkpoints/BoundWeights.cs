using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// The tensors of a checkpoint bound to a variant's manifest. Tensors that view memory-mapped files keep their
/// mapping alive until this object is disposed, even when the <see cref="CheckpointFolder"/> was closed first.
/// </summary>
public sealed class BoundWeights : IBoundWeights, IDisposable
{
    private readonly Dictionary<string, Tensor> _tensors;
    private readonly List<MappedFileStorage> _mappings;
    private bool _disposed;

    internal BoundWeights(Dictionary<string, Tensor> tensors, IReadOnlyList<string> ignoredKeys, List<MappedFileStorage> mappings,
        long mappedBytes, long copiedBytes, string? visionTowerSource = null)
    {
        VisionTowerSource = visionTowerSource;
        _tensors = tensors;
        IgnoredKeys = ignoredKeys;
        _mappings = mappings;
        MappedBytes = mappedBytes;
        CopiedBytes = copiedBytes;
    }

    /// <summary>Wraps tensors already in memory (tests, tools); nothing is copied and nothing is owned.</summary>
    public static BoundWeights FromTensors(IReadOnlyDictionary<string, Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var copy = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (k, v) in tensors) copy.Add(k, v ?? throw new ArgumentException($"tensor '{k}' is null", nameof(tensors)));
        return new BoundWeights(copy, Array.Empty<string>(), new List<MappedFileStorage>(), 0, 0);
    }

    public Tensor this[string key]
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _tensors.TryGetValue(key, out var t) ? t : throw new KeyNotFoundException($"no bound weight '{key}'");
        }
    }

    public bool Contains(string key) => _tensors.ContainsKey(key);
    public IReadOnlyCollection<string> Keys => _tensors.Keys;
    public int Count => _tensors.Count;

    /// <summary>Checkpoint keys that matched the manifest's ignore patterns (present, harmless, not loaded).</summary>
    public IReadOnlyList<string> IgnoredKeys { get; }

    /// <summary>The checkpoint the vision tower's weights came from (the model checkpoint, or the separate tower given
    /// in <see cref="BindOptions.VisionTowerPath"/>); null for a variant without a tower or weights not bound from files.</summary>
    public string? VisionTowerSource { get; }

    /// <summary>Bytes used in place from memory-mapped files.</summary>
    public long MappedBytes { get; }

    /// <summary>Bytes copied at bind time (dtype conversion, non-contiguous or misaligned sources): native memory, not managed heap.</summary>
    public long CopiedBytes { get; }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var m in _mappings) m.ReleaseReference();
        _mappings.Clear();
    }
}
