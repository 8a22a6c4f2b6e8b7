using System.Text;
using MoeCompiler.Tokenizers.Bpe;
using MoeCompiler.Tokenizers.Splitting;

namespace MoeCompiler.Tokenizers;

/// <summary>SentencePiece-style BPE (Mistral, OpenChat, Llama): each text chunk gets a "▁" prefix and its
/// spaces become "▁"; symbols start as single characters and merge by rank; characters outside the
/// vocabulary fall back to their UTF-8 bytes as &lt;0xXX&gt; tokens.</summary>
public sealed class SentencePieceBpeTokenizer : TokenizerBase
{
    public const char SpaceSymbol = '\u2581';

    private readonly string[] _pieces;
    private readonly Dictionary<int, int> _charToId;
    private readonly PairMergeTable _merges;
    private readonly int[]? _byteFallback;     // byte value → id of "<0xXX>", or null without byte fallback
    private readonly Dictionary<int, byte> _idToByte = new();
    private readonly int _unkId;
    private readonly bool _addDummyPrefix;
    private readonly bool _removeExtraWhitespace;
    private readonly bool _legacy;
    private readonly int _unknownPrefixLength;

    internal SentencePieceBpeTokenizer(string[] pieces, PairMergeTable merges, int[]? byteFallback, int unkId,
        bool addDummyPrefix, bool removeExtraWhitespace, IReadOnlyList<AddedToken> addedTokens, int vocabSize, int? bosId, IReadOnlyList<int> eosIds,
        bool legacy = true)
        : base(addedTokens, vocabSize, bosId, eosIds, normalizeNfc: false)
    {
        _legacy = legacy;
        _pieces = pieces;
        _merges = merges;
        _byteFallback = byteFallback;
        _unkId = unkId;
        _addDummyPrefix = addDummyPrefix;
        _removeExtraWhitespace = removeExtraWhitespace;
        _charToId = new Dictionary<int, int>();
        var added = new HashSet<int>(addedTokens.Select(t => t.Id));
        for (int id = 0; id < pieces.Length; id++)
        {
            string piece = pieces[id];
            if (string.IsNullOrEmpty(piece) || added.Contains(id)) continue;
            int cp = CodePoints.At(piece, 0, out int length);
            if (length == piece.Length) _charToId.TryAdd(cp, id);
        }
        if (byteFallback is not null)
            for (int b = 0; b < 256; b++) _idToByte[byteFallback[b]] = (byte)b;
        if (!legacy)
        {
            if (unkId < 0) throw new ArgumentException("non-legacy SentencePiece encoding needs an <unk> piece", nameof(unkId));
            var probe = new List<int>();
            EncodeNormalized(ToPieceText(pieces[unkId], dummyPrefix: false), probe);
            _unknownPrefixLength = probe.Count;
        }
    }

    /// <summary>False for Hugging Face's slow LlamaTokenizer with legacy=False (tokenizer_config.json "legacy": false):
    /// only the start of the text gets the "▁" prefix, not the text after a special token.</summary>
    public bool Legacy => _legacy;

    /// <summary>This tokenizer with the given legacy mode (see <see cref="Legacy"/>); the tables are shared.</summary>
    public SentencePieceBpeTokenizer WithLegacy(bool legacy) => legacy == _legacy ? this
        : new SentencePieceBpeTokenizer(_pieces, _merges, _byteFallback, _unkId, _addDummyPrefix, _removeExtraWhitespace,
            AddedTokens, VocabSize, BosId, EosIds, legacy);

    /// <summary>With legacy=False, LlamaTokenizer.tokenize: "▁" + text (with "▁" turned into spaces), split at added
    /// tokens, a lone leading "▁" before a special token dropped, and each piece encoded without the dummy prefix;
    /// a piece that starts with a space is encoded behind "&lt;unk&gt;" whose pieces are then removed (its _tokenize).</summary>
    public override int[] Encode(string text, bool allowSpecial = true)
    {
        if (_legacy) return base.Encode(text, allowSpecial);
        ArgumentNullException.ThrowIfNull(text);
        text = Utf8Text.ReplaceLoneSurrogates(text);
        if (text.Length == 0) return [];
        string prefixed = (_addDummyPrefix ? SpaceSymbol.ToString() : "") + text.Replace(SpaceSymbol, ' ');

        var ids = new List<int>();
        AddedTokenMatcher matcher = AddedMatcher(allowSpecial);
        int position = 0;
        while (position < prefixed.Length)
        {
            bool found = matcher.TryFindNext(prefixed, position, out int start, out int length, out int id);
            int end = found ? start : prefixed.Length;
            bool loneLeadingSpace = position == 0 && end == 1 && _addDummyPrefix && found && IsSpecial(id);
            if (end > position && !loneLeadingSpace) EncodeNonLegacyPiece(prefixed.AsSpan(position, end - position), ids);
            if (!found) break;
            ids.Add(id);
            position = start + length;
        }
        return ids.ToArray();
    }

    private void EncodeNonLegacyPiece(ReadOnlySpan<char> piece, List<int> ids)
    {
        if (piece[0] is not (SpaceSymbol or ' '))
        {
            EncodeNormalized(ToPieceText(piece, dummyPrefix: false), ids);
            return;
        }
        var withUnknown = new List<int>();
        EncodeNormalized(ToPieceText(string.Concat(_pieces[_unkId], piece), dummyPrefix: false), withUnknown);
        ids.AddRange(withUnknown.Count >= _unknownPrefixLength ? withUnknown.Skip(_unknownPrefixLength) : withUnknown);
    }

    internal override bool StripsLeadingSpace => _addDummyPrefix;

    public int UnknownId => _unkId;
    public bool HasByteFallback => _byteFallback is not null;

    private protected override void EncodeOrdinary(ReadOnlySpan<char> text, List<int> ids) => EncodeNormalized(Normalize(text), ids);

    private static string ToPieceText(ReadOnlySpan<char> text, bool dummyPrefix) =>
        (dummyPrefix ? SpaceSymbol.ToString() : "") + text.ToString().Replace(' ', SpaceSymbol);

    /// <summary>BPE over text already in piece form ("▁" for spaces).</summary>
    private void EncodeNormalized(string normalized, List<int> ids)
    {
        if (normalized.Length == 0) return;

        var symbols = new int[normalized.Length];
        int count = 0;
        for (int i = 0; i < normalized.Length;)
        {
            int cp = CodePoints.At(normalized, i, out int length);
            // Unknown characters get a negative id (the complement of the code point): they never merge.
            symbols[count++] = _charToId.TryGetValue(cp, out int id) ? id : ~cp;
            i += length;
        }
        count = BpeMerger.Merge(symbols.AsSpan(0, count), _merges);

        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < count; i++)
        {
            int id = symbols[i];
            if (id >= 0)
            {
                ids.Add(id);
                continue;
            }
            if (_byteFallback is not null)
            {
                int n = new Rune(~id).EncodeToUtf8(utf8);
                for (int b = 0; b < n; b++) ids.Add(_byteFallback[utf8[b]]);
            }
            else if (i == 0 || symbols[i - 1] >= 0)
            {
                ids.Add(_unkId); // consecutive unknown characters fuse into one <unk>
            }
        }
    }

    private string Normalize(ReadOnlySpan<char> text)
    {
        string s = text.ToString();
        if (_removeExtraWhitespace)
            s = string.Join(' ', s.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        if (s.Length == 0) return s;
        var builder = new StringBuilder(s.Length + 1);
        if (_addDummyPrefix) builder.Append(SpaceSymbol);
        builder.Append(s).Replace(' ', SpaceSymbol);
        return builder.ToString();
    }

    private protected override int? OrdinaryTokenId(string content)
    {
        int id = Array.IndexOf(_pieces, content);
        return id >= 0 ? id : null;
    }

    private protected override bool TryAppendOrdinaryBytes(int id, List<byte> bytes)
    {
        if ((uint)id >= (uint)_pieces.Length || _pieces[id] is not { } piece) return false;
        if (_idToByte.TryGetValue(id, out byte b))
        {
            bytes.Add(b);
            return true;
        }
        if (id == _unkId)
        {
            bytes.AddRange(" \u2047 "u8.ToArray()); // SentencePiece renders <unk> as " ⁇ "
            return true;
        }
        bytes.AddRange(Encoding.UTF8.GetBytes(piece.Replace(SpaceSymbol, ' ')));
        return true;
    }
}
