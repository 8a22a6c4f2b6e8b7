using System.Text;

namespace MoeCompiler.Tokenizers;

/// <summary>What all tokenizers share: added/special tokens matched in the text first, the model's own
/// algorithm on the text between them, and byte-level decoding.</summary>
public abstract class TokenizerBase : ITokenizer
{
    private static readonly byte[] ReplacementBytes = [0xEF, 0xBF, 0xBD];

    private readonly AddedTokenMatcher _allAdded;
    private readonly AddedTokenMatcher _nonSpecialAdded;
    private readonly Dictionary<int, AddedToken> _addedById;
    private int[] _eosIds;

    private protected TokenizerBase(IReadOnlyList<AddedToken> addedTokens, int vocabSize, int? bosId, IReadOnlyList<int> eosIds, bool normalizeNfc)
    {
        AddedTokens = addedTokens;
        _addedById = new Dictionary<int, AddedToken>();
        foreach (AddedToken token in addedTokens) _addedById[token.Id] = token;
        _allAdded = new AddedTokenMatcher(addedTokens);
        _nonSpecialAdded = new AddedTokenMatcher(addedTokens.Where(t => !t.IsSpecial));
        VocabSize = vocabSize;
        BosId = bosId;
        _eosIds = eosIds.ToArray();
        NormalizesNfc = normalizeNfc;
    }

    public int VocabSize { get; }
    public int? BosId { get; private set; }
    public IReadOnlyList<int> EosIds => _eosIds;
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>True when the reference appends EOS to each encoded text (a Llama-style tokenizer_config.json with
    /// "add_eos_token": true); <see cref="ImagePromptTokenizer"/> then ends every prompt chunk with it.</summary>
    public bool AddsEos { get; internal set; }

    /// <summary>BOS and EOS as a model folder's tokenizer_config.json / special_tokens_map.json name them; set by
    /// the loader before the tokenizer is handed out.</summary>
    internal void SetSpecialIds(int? bosId, IReadOnlyList<int> eosIds)
    {
        BosId = bosId;
        _eosIds = eosIds.ToArray();
    }

    /// <summary>The id of a token's exact string: an added token, or else an ordinary vocabulary entry (for
    /// SentencePiece in piece form, "▁" for spaces; for byte-level BPE the token's text).</summary>
    public int? TokenId(string content)
    {
        ArgumentNullException.ThrowIfNull(content);
        return AddedTokenId(content) ?? OrdinaryTokenId(content);
    }

    /// <summary>A linear search, for the few lookups made while loading.</summary>
    private protected abstract int? OrdinaryTokenId(string content);

    /// <summary>True when the text is put in Unicode NFC before encoding (Qwen, Arcade100k).</summary>
    public bool NormalizesNfc { get; }

    /// <summary>True when <see cref="Decode"/> and streaming decode apply Hugging Face's clean_up_tokenization_spaces
    /// (<see cref="TokenizationSpaces.CleanUp"/>); set from a model folder's tokenizer_config.json.</summary>
    public bool CleansUpTokenizationSpaces { get; internal set; }

    /// <summary>True when decoding drops one space at the very start (SentencePiece's dummy prefix).</summary>
    internal virtual bool StripsLeadingSpace => false;

    public bool IsSpecial(int id) => _addedById.TryGetValue(id, out AddedToken? token) && token.IsSpecial;

    /// <summary>The id of an added or special token's exact string, if there is one.</summary>
    public int? AddedTokenId(string content) => _addedById.Values.FirstOrDefault(t => t.Content == content)?.Id;

    public virtual int[] Encode(string text, bool allowSpecial = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = Utf8Text.ReplaceLoneSurrogates(text);
        if (NormalizesNfc) text = Normalization.Nfc.Normalize(text);

        var ids = new List<int>(text.Length / 3 + 4);
        AddedTokenMatcher matcher = allowSpecial ? _allAdded : _nonSpecialAdded;
        ReadOnlySpan<char> span = text;
        int position = 0;
        while (matcher.TryFindNext(span, position, out int start, out int length, out int id))
        {
            if (start > position) EncodeOrdinary(span[position..start], ids);
            ids.Add(id);
            position = start + length;
        }
        if (position < span.Length) EncodeOrdinary(span[position..], ids);
        return ids.ToArray();
    }

    /// <summary>The added-token matcher for <see cref="Encode"/>: all added tokens, or only the non-special ones.</summary>
    private protected AddedTokenMatcher AddedMatcher(bool allowSpecial) => allowSpecial ? _allAdded : _nonSpecialAdded;

    /// <summary>Encodes UTF-8 bytes; invalid sequences become U+FFFD first.</summary>
    public int[] EncodeUtf8(ReadOnlySpan<byte> utf8, bool allowSpecial = true) => Encode(Encoding.UTF8.GetString(utf8), allowSpecial);

    /// <summary>Encodes text that contains no added tokens (a segment between them).</summary>
    private protected abstract void EncodeOrdinary(ReadOnlySpan<char> text, List<int> ids);

    /// <summary>Appends the bytes of one ordinary (non-added) token; false if the id is not one.</summary>
    private protected abstract bool TryAppendOrdinaryBytes(int id, List<byte> bytes);

    internal void AppendTokenBytes(int id, bool skipSpecial, List<byte> bytes)
    {
        if (_addedById.TryGetValue(id, out AddedToken? added))
        {
            if (!(skipSpecial && added.IsSpecial)) bytes.AddRange(Encoding.UTF8.GetBytes(added.Content));
            return;
        }
        if (!TryAppendOrdinaryBytes(id, bytes)) bytes.AddRange(ReplacementBytes);
    }

    public string Decode(ReadOnlySpan<int> ids, bool skipSpecial = true)
    {
        var bytes = new List<byte>(ids.Length * 4);
        foreach (int id in ids) AppendTokenBytes(id, skipSpecial, bytes);
        string text = Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
        if (StripsLeadingSpace && text.StartsWith(' ')) text = text[1..];
        return CleansUpTokenizationSpaces ? TokenizationSpaces.CleanUp(text) : text;
    }

    public StreamingDecoder CreateStreamingDecoder(bool skipSpecial = true) => new(this, skipSpecial);
}
