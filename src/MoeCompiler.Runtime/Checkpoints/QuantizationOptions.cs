using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// Which weights are quantised, and to what (docs/quantization.md). Linear weights of the LLM (attention, dense
/// feed-forward, experts), the projector and the vision tower get <see cref="Type"/>; the token embedding and lm_head
/// get <see cref="EmbeddingType"/> (null keeps them as stored). Routers, norms, biases, convolutions and position
/// embeddings are never quantised: routing decisions must not move.
/// </summary>
public sealed record QuantizationOptions(QuantizationType Type)
{
    /// <summary>Default int8 for both types: lm_head is the largest single matrix a decode step reads, and int8 keeps
    /// its logits close (docs/quantization.md has the measured effect of each choice).</summary>
    public QuantizationType? EmbeddingType { get; init; } = QuantizationType.Int8;

    /// <summary>The type <paramref name="entry"/> gets, or null when it stays as stored.</summary>
    public QuantizationType? TypeFor(WeightEntry entry)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (!WeightQuantizer.FitsShape(entry.Shape)) return null;
        switch (entry.Role)
        {
            case WeightRole.Attention or WeightRole.FeedForward or WeightRole.Expert or WeightRole.Projector:
                return entry.Key.EndsWith(".weight", StringComparison.Ordinal) ? Type : null;
            case WeightRole.Vision:
                // Linear weights only: position and class embeddings are added to activations, not multiplied.
                return entry.Key.EndsWith(".weight", StringComparison.Ordinal) && !entry.Key.Contains("embedding", StringComparison.Ordinal) ? Type : null;
            case WeightRole.Embedding or WeightRole.LmHead:
                return EmbeddingType;
            default:
                return null;
        }
    }
}
