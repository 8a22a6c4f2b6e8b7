namespace MoeCompiler.Tokenizers;

/// <summary>The reference's tokenizer_image_token: the prompt is split at "&lt;image&gt;", each chunk is tokenised on
/// its own (so SentencePiece gives every chunk its "▁" prefix), and the chunks are joined with
/// <see cref="ImageTokenId"/>; a BOS appears once, at the start. A tokenizer that <see cref="TokenizerBase.AddsEos"/>
/// ends every chunk with EOS, as the reference's per-chunk tokenizer(chunk) call does.</summary>
public static class ImagePromptTokenizer
{
    public const int ImageTokenId = -200;

    public static int[] Tokenize(ITokenizer tokenizer, string prompt, bool addBos)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(prompt);
        var ids = new List<int>();
        if (addBos && tokenizer.BosId is int bos) ids.Add(bos);
        int? appendedEos = tokenizer is TokenizerBase { AddsEos: true } && tokenizer.EosIds.Count > 0 ? tokenizer.EosIds[0] : null;
        string[] chunks = prompt.Split(PromptTemplates.ImagePlaceholder);
        for (int i = 0; i < chunks.Length; i++)
        {
            if (i > 0) ids.Add(ImageTokenId);
            ids.AddRange(tokenizer.Encode(chunks[i]));
            if (appendedEos is int eos) ids.Add(eos);
        }
        return ids.ToArray();
    }
}
