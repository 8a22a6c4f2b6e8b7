using System.Diagnostics;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Generation;

/// <summary>The prompt as the LLM sees it: text embeddings with the projected image features in place of each
/// image placeholder, one row per position.</summary>
public sealed record SplicedSequence(Tensor Embeddings, bool[] IsImageToken, int ImageTokens, TimeSpan ImageEncoding)
{
    public int Length => IsImageToken.Length;
}

/// <summary>Builds the spliced input sequence of a multimodal prompt (LLaVA's prepare_inputs_labels_for_multimodal
/// at batch 1: text chunks between placeholders are embedded, each placeholder becomes one image's features).</summary>
public static class PromptSplicer
{
    /// <summary>The id LLaVA-style tokenisation puts where the prompt says &lt;image&gt;.</summary>
    public const int ImageTokenId = -200;

    /// <param name="visionContext">Context for the vision tower and projector (no KV cache).</param>
    /// <param name="textContext">Context for the token embedding.</param>
    /// <exception cref="ModelInputException">Images or image placeholders for a text-only model.</exception>
    public static SplicedSequence Splice(ILanguageModel model, ForwardContext visionContext, ForwardContext textContext,
        IReadOnlyList<int> ids, IReadOnlyList<Tensor> images, int imageTokenId = ImageTokenId)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(images);
        if (ids.Count == 0) throw new ArgumentException("the prompt has no tokens", nameof(ids));
        int placeholders = 0;
        int vocab = model.Description.VocabSize;
        for (int i = 0; i < ids.Count; i++)
        {
            if (ids[i] == imageTokenId) placeholders++;
            else if (ids[i] < 0 || ids[i] >= vocab)
                throw new ArgumentException($"token id {ids[i]} at position {i} is outside the vocabulary [0, {vocab})", nameof(ids));
        }
        var vision = model as IVisionLanguageModel;
        if (vision is null && (placeholders > 0 || images.Count > 0))
            throw new ModelInputException(TextOnlyMessage(model.Description));
        if (placeholders != images.Count)
            throw new ArgumentException($"the prompt has {placeholders} image placeholder(s) but {images.Count} image(s) were given", nameof(images));

        var parts = new List<(Tensor Rows, bool Image)>();
        var imageTime = TimeSpan.Zero;
        int imageIndex = 0;
        int start = 0;
        for (int i = 0; i <= ids.Count; i++)
        {
            if (i < ids.Count && ids[i] != imageTokenId) continue;
            if (i > start)
            {
                int[] chunk = new int[i - start];
                for (int j = 0; j < chunk.Length; j++) chunk[j] = ids[start + j];
                parts.Add((model.EmbedTokens(textContext, chunk), false));
            }
            if (i < ids.Count)
            {
                long t0 = Stopwatch.GetTimestamp();
                Tensor features = vision!.EncodeImage(visionContext, images[imageIndex++]);
                imageTime += Stopwatch.GetElapsedTime(t0);
                parts.Add((features, true));
            }
            start = i + 1;
        }

        int hidden = model.Description.HiddenSize;
        int rows = 0, imageRows = 0;
        foreach (var (part, image) in parts)
        {
            if (part.Rank != 2 || part.Dim(1) != hidden)
                throw new InvalidOperationException($"{(image ? "image features" : "token embeddings")} have shape {Tensor.FormatShape(part.Shape)}, expected [rows, {hidden}]");
            rows += part.Dim(0);
            if (image) imageRows += part.Dim(0);
        }
        var backend = textContext.Backend;
        Tensor embeddings;
        if (parts.Count == 1)
        {
            embeddings = parts[0].Rows;
        }
        else
        {
            embeddings = backend.Allocate(DType.F32, rows, hidden);
            int row = 0;
            foreach (var (part, _) in parts)
            {
                backend.CopyRows(part, 0, embeddings, row, part.Dim(0));
                row += part.Dim(0);
            }
        }
        bool[] isImage = new bool[rows];
        int at = 0;
        foreach (var (part, image) in parts)
        {
            if (image) Array.Fill(isImage, true, at, part.Dim(0));
            at += part.Dim(0);
        }
        return new SplicedSequence(embeddings, isImage, imageRows, imageTime);
    }

    /// <summary>What a text-only variant answers to an image.</summary>
    public static string TextOnlyMessage(ModelDescription description) => $"{description.Name} is text-only: it takes no image";
}
