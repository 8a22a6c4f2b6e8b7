using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

/// <summary>
/// A variant with a vision tower and a projector: a language model that also turns images into rows of its
/// embedding space, to be spliced in at the prompt's image placeholders.
/// </summary>
public interface IVisionLanguageModel : ILanguageModel
{
    /// <summary>Preprocessed pixels [3, S, S] → projected image features [imageTokens, hidden].</summary>
    Tensor EncodeImage(ForwardContext context, Tensor pixels);
}
