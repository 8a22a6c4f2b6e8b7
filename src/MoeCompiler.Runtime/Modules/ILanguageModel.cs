using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

/// <summary>
/// What every generated variant offers the generic pipeline (tokenise, embed, generate). A text-only variant
/// (spec without a vision tower) is only this; a variant with a tower is an <see cref="IVisionLanguageModel"/>.
/// All tensors are [rows, width] activations owned by <see cref="ForwardContext.Backend"/>.
/// </summary>
public interface ILanguageModel
{
    ModelDescription Description { get; }

    /// <summary>How the LLM's matrix weights are stored as bound (lm_head's dtype): decides the default precision
    /// of the KV cache (<see cref="Backends.IBackend.KvCacheDType"/>).</summary>
    DType LlmWeightDType { get; }

    /// <summary>Token ids → embeddings [T, hidden].</summary>
    Tensor EmbedTokens(ForwardContext context, ReadOnlySpan<int> ids);

    /// <summary>
    /// Embeddings [T, hidden] at positions context.StartPosition.. → logits [T, vocab]. Appends to the KV cache.
    /// </summary>
    Tensor Forward(ForwardContext context, Tensor embeddings);
}
