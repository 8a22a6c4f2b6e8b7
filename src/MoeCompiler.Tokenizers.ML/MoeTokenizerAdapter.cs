using System.Buffers;
using Microsoft.ML.Tokenizers;

namespace MoeCompiler.Tokenizers.ML;

/// <summary>
/// One of our tokenizers (<see cref="ITokenizer"/>: tiktoken, GPT-2 byte-level BPE, SentencePiece BPE, a checkpoint
/// folder's tokenizer.json) as a <c>Microsoft.ML.Tokenizers.Tokenizer</c>, for code written against that abstraction
/// (Microsoft.Extensions.AI helpers, ML.NET, Semantic Kernel text chunkers). The ids are exactly ours; docs/tokenizers.md
/// says why we adapt ours rather than use Microsoft's own implementations.
/// </summary>
/// <remarks>
/// Offsets: each token's range is where its text falls in the text the ids decode to (special tokens included). For
/// byte-level tokenizers that is the input itself; where it is not (Qwen's NFC normalization, SentencePiece's
/// dropped dummy-prefix space, an unknown character) that text is returned as <c>NormalizedText</c>, as
/// Microsoft.ML.Tokenizers does for its normalizers, and the offsets index it. A token that ends inside a multi-byte
/// character has an empty range and value; the character goes to the token that completes it. Thread-safe, as the
/// wrapped tokenizer is.
/// </remarks>
public sealed class MoeTokenizerAdapter : Tokenizer
{
    private readonly ITokenizer _tokenizer;
    private readonly bool _allowSpecial;
    private readonly bool _addBos;

    /// <param name="allowSpecial">Special tokens' strings in the text ("&lt;|endoftext|&gt;") become their ids,
    /// as <see cref="ITokenizer.Encode"/> does by default.</param>
    /// <param name="addBeginningOfSentence">Prepend the tokenizer's BOS id, when it has one (Microsoft's
    /// LlamaTokenizer does by default; ours never does on its own).</param>
    public MoeTokenizerAdapter(ITokenizer tokenizer, bool allowSpecial = true, bool addBeginningOfSentence = false)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _allowSpecial = allowSpecial;
        _addBos = addBeginningOfSentence;
    }

    /// <summary>The adapted tokenizer.</summary>
    public ITokenizer Inner => _tokenizer;

    /// <summary>A bundled tokenizer by kind ("qwen", "gpt2", "phi2", "arcade100k", "sentencepiece", "openchat").</summary>
    public static MoeTokenizerAdapter ForKind(string kind, bool allowSpecial = true, bool addBeginningOfSentence = false) =>
        new(TokenizerLoader.ForKind(kind), allowSpecial, addBeginningOfSentence);

    protected override EncodeResults<EncodedToken> EncodeToTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        string input = text ?? textSpan.ToString();
        int[] ids = Ids(input);
        int max = settings.MaxTokenCount;
        if (max <= 0) throw new ArgumentOutOfRangeException(nameof(settings), "MaxTokenCount must be positive");

        var tokens = new List<EncodedToken>(Math.Min(ids.Length, max));
        var decoder = _tokenizer.CreateStreamingDecoder(skipSpecial: false);
        var decoded = new System.Text.StringBuilder(input.Length);
        for (int i = 0; i < ids.Length; i++)
        {
            int start = decoded.Length;
            string piece = decoder.Push(ids[i]);
            decoded.Append(piece);
            if (tokens.Count < max) tokens.Add(new EncodedToken(ids[i], piece, new Range(start, decoded.Length)));
        }
        decoded.Append(decoder.Flush());
        // The offsets index the text the ids decode to; when that is not the input, it is reported as the normalized text.
        string? normalized = decoded.ToString() is var text2 && text2 != input ? text2 : null;
        int length = normalized?.Length ?? input.Length;
        int consumed = tokens.Count == ids.Length ? length : tokens.Count == 0 ? 0 : tokens[^1].Offset.End.Value;
        return new EncodeResults<EncodedToken> { Tokens = tokens, NormalizedText = normalized, CharsConsumed = consumed };
    }

    protected override EncodeResults<int> EncodeToIds(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        if (settings.MaxTokenCount < int.MaxValue)
        {
            var tokens = EncodeToTokens(text, textSpan, settings);
            return new EncodeResults<int> { Tokens = tokens.Tokens.Select(t => t.Id).ToList(), NormalizedText = tokens.NormalizedText, CharsConsumed = tokens.CharsConsumed };
        }
        string input = text ?? textSpan.ToString();
        return new EncodeResults<int> { Tokens = Ids(input), NormalizedText = null, CharsConsumed = input.Length };
    }

    protected override int CountTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings) =>
        Math.Min(Ids(text ?? textSpan.ToString()).Length, settings.MaxTokenCount);

    private int[] Ids(string text)
    {
        int[] ids = _tokenizer.Encode(text, _allowSpecial);
        return _addBos && _tokenizer.BosId is int bos ? [bos, .. ids] : ids;
    }

    /// <summary>Decodes as <see cref="ITokenizer.Decode"/> does: special tokens skipped, invalid UTF-8 as U+FFFD.</summary>
    public override string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        return _tokenizer.Decode(ids.ToArray());
    }

    public override OperationStatus Decode(IEnumerable<int> ids, Span<char> destination, out int idsConsumed, out int charsWritten)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var decoder = _tokenizer.CreateStreamingDecoder(skipSpecial: true);
        idsConsumed = 0;
        charsWritten = 0;
        foreach (int id in ids)
        {
            string piece = decoder.Push(id);
            if (charsWritten + piece.Length > destination.Length) return OperationStatus.DestinationTooSmall;
            piece.AsSpan().CopyTo(destination[charsWritten..]);
            charsWritten += piece.Length;
            idsConsumed++;
        }
        string rest = decoder.Flush();
        if (charsWritten + rest.Length > destination.Length) return OperationStatus.DestinationTooSmall;
        rest.AsSpan().CopyTo(destination[charsWritten..]);
        charsWritten += rest.Length;
        return OperationStatus.Done;
    }
}
