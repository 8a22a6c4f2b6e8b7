using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

/// <summary>
/// What a generated variant offers the generic pipeline (tokenise, preprocess, splice, generate).
/// All tensors are [rows, width] activations owned by <see cref="ForwardContext.Backend"/>.
/// </summary>
public interface IVisionLanguageModel
{
    ModelDescription Description { get; }

    /// <summary>How the LLM's matrix weights are stored as bound (lm_head's dtype): decides the default precision
    /// of the KV cache (<see cref="Backends.IBackend.KvCacheDType"/>).</summary>
    DType LlmWeightDType { get; }

    /// <summary>Preprocessed pixels [3, S, S] → projected image features [imageTokens, hidden].</summary>
    Tensor EncodeImage(ForwardContext context, Tensor pixels);

    /// <summary>Token ids → embeddings [T, hidden].</summary>
    Tensor EmbedTokens(ForwardContext context, ReadOnlySpan<int> ids);

    /// <summary>
    /// Embeddings [T, hidden] at positions context.StartPosition.. → logits [T, vocab]. Appends to the KV cache.
    /// </summary>
    Tensor Forward(ForwardContext context, Tensor embeddings);
}
