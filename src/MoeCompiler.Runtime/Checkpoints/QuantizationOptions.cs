using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// Which weights are quantised, and to what (docs/quantization.md). Linear weights of the LLM (attention, dense
/// feed-forward, experts) get <see cref="Type"/>; the vision tower and the projector get <see cref="TowerType"/> and the
/// token embedding and lm_head <see cref="EmbeddingType"/> (null keeps them as stored). Routers, norms, biases,
/// convolutions and position embeddings are never quantised: routing decisions must not move.
/// </summary>
public sealed record QuantizationOptions(QuantizationType Type)
{
    /// <summary>Default int8 for both types: lm_head is the largest single matrix a decode step reads, and int8 keeps
    /// its logits close (docs/quantization.md has the measured effect of each choice).</summary>
    public QuantizationType? EmbeddingType { get; init; } = QuantizationType.Int8;

    /// <summary>The vision tower's and the projector's linear weights. Default: kept as stored for int8 (null) and int8
    /// for q4. They run once per image and no decode step reads them, so this costs no decode bandwidth, while their
    /// rounding error carries into every image position of the LLM (measured in docs/quantization.md, "Which
    /// tensors": half of int8's full-size KL, and q4's KL doubles with the tower at q4).</summary>
    public QuantizationType? TowerType { get; init; } = Type == QuantizationType.Int8 ? null : QuantizationType.Int8;

    /// <summary>Dtype of the group scales: BF16 (the default, what <c>moe quantize</c> writes) or F32. F32 exists to
    /// measure what the bf16 rounding of the scale costs (docs/quantization.md, "Where the error comes from").</summary>
    public DType ScaleDType { get; init; } = DType.BF16;

    /// <summary>Only weights of these roles are quantised (null: every role the policy names). For ablations that
    /// find which tensors carry the error.</summary>
    public IReadOnlySet<WeightRole>? Roles { get; init; }

    /// <summary>Per-role overrides of the type (a mixed recipe, like llama.cpp's Q4_K_M keeping sensitive matrices at
    /// higher precision); they win over <see cref="Type"/>, <see cref="TowerType"/> and <see cref="EmbeddingType"/>, and
    /// a role mapped to null stays as stored. Routers, norms and biases are never quantised.</summary>
    public IReadOnlyDictionary<WeightRole, QuantizationType?>? RoleTypes { get; init; }

    /// <summary>Fake quantisation: round the weights through the format, then store them dequantised as f32 so that
    /// they run through the f32 kernels. Measures the format apart from the quantised kernels (costs f32 memory).</summary>
    public bool Simulate { get; init; }

    /// <summary>q4 only: choose each group's scale by least squared error among candidates around m / −8 (same layout,
    /// same dequantisation; only the choice of scale differs). See <see cref="WeightQuantizer.Quantize"/>.</summary>
    public bool SearchScale { get; init; }

    /// <summary>The type <paramref name="entry"/> gets, or null when it stays as stored.</summary>
    public QuantizationType? TypeFor(WeightEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (!WeightQuantizer.FitsShape(entry.Shape)) return null;
        if (Roles is not null && !Roles.Contains(entry.Role)) return null;
        if (!Quantisable(entry)) return null;
        if (RoleTypes is not null && RoleTypes.TryGetValue(entry.Role, out var overridden)) return overridden;
        return entry.Role switch
        {
            WeightRole.Vision or WeightRole.Projector => TowerType,
            WeightRole.Embedding or WeightRole.LmHead => EmbeddingType,
            _ => Type,
        };
    }

    /// <summary>Whether the policy may quantise <paramref name="entry"/> at all: linear weights and the embedding
    /// tables; never routers, norms, biases or what is added to activations.</summary>
    private static bool Quantisable(WeightEntry entry) => entry.Role switch
    {
        WeightRole.Attention or WeightRole.FeedForward or WeightRole.Expert or WeightRole.Projector =>
            entry.Key.EndsWith(".weight", StringComparison.Ordinal),
        // Linear weights only: position and class embeddings are added to activations, not multiplied.
        WeightRole.Vision => entry.Key.EndsWith(".weight", StringComparison.Ordinal) && !entry.Key.Contains("embedding", StringComparison.Ordinal),
        WeightRole.Embedding or WeightRole.LmHead => true,
        _ => false,
    };
}
