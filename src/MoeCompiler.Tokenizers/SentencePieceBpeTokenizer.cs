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

    internal SentencePieceBpeTokenizer(string[] pieces, PairMergeTable merges, int[]? byteFallback, int unkId,
        bool addDummyPrefix, bool removeExtraWhitespace, IReadOnlyList<AddedToken> addedTokens, int vocabSize, int? bosId, IReadOnlyList<int> eosIds)
        : base(addedTokens, vocabSize, bosId, eosIds, normalizeNfc: false)
    {
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
            if (piece is null || added.Contains(id)) continue;
            int cp = CodePoints.At(piece, 0, out int length);
            if (length == piece.Length) _charToId.TryAdd(cp, id);
        }
        if (byteFallback is not null)
            for (int b = 0; b < 256; b++) _idToByte[byteFallback[b]] = (byte)b;
    }

    internal override bool StripsLeadingSpace => _addDummyPrefix;

    public int UnknownId => _unkId;
    public bool HasByteFallback => _byteFallback is not null;

    private protected override void EncodeOrdinary(ReadOnlySpan<char> text, List<int> ids)
    {
        string normalized = Normalize(text);
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
