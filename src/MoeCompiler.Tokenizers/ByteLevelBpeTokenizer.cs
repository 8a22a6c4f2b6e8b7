using System.Collections.Concurrent;
using System.Text;
using MoeCompiler.Tokenizers.Bpe;
using MoeCompiler.Tokenizers.Splitting;

namespace MoeCompiler.Tokenizers;

/// <summary>Byte-level BPE (tiktoken's qwen.tiktoken / cl100k ranks, GPT-2's vocab.json + merges.txt): the
/// text is split by a regex-equivalent splitter, each piece's UTF-8 bytes start as one-byte tokens and are
/// merged pairwise by rank.</summary>
public sealed class ByteLevelBpeTokenizer : TokenizerBase
{
    private const int MaxCachedPieceLength = 64;
    private const int MaxCacheEntries = 1 << 18;

    private readonly byte[]?[] _tokenBytes;
    private readonly int[] _byteToId;
    private readonly PairMergeTable _merges;
    private readonly PieceSplitter _splitter;
    private readonly ConcurrentDictionary<string, int[]> _cache = new();
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheLookup;
    private int _cacheCount; // ConcurrentDictionary.Count takes every lock, far too slow to ask per piece

    internal ByteLevelBpeTokenizer(byte[]?[] tokenBytes, int[] byteToId, PairMergeTable merges, PieceSplitter splitter,
        IReadOnlyList<AddedToken> addedTokens, int vocabSize, int? bosId, IReadOnlyList<int> eosIds, bool normalizeNfc)
        : base(addedTokens, vocabSize, bosId, eosIds, normalizeNfc)
    {
        if (byteToId.Length != 256) throw new ArgumentException("a byte-level vocabulary needs all 256 single bytes", nameof(byteToId));
        _tokenBytes = tokenBytes;
        _byteToId = byteToId;
        _merges = merges;
        _splitter = splitter;
        _cacheLookup = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Name of the split pattern in use (for diagnostics).</summary>
    public string SplitterName => _splitter.GetType().Name;

    /// <summary>Bytes of an ordinary token, or null.</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) => (uint)id < (uint)_tokenBytes.Length ? _tokenBytes[id] : null;

    private protected override void EncodeOrdinary(ReadOnlySpan<char> text, List<int> ids)
    {
        int position = 0;
        while (position < text.Length)
        {
            int length = _splitter.NextPieceLength(text[position..]);
            EncodePiece(text.Slice(position, length), ids);
            position += length;
        }
    }

    private void EncodePiece(ReadOnlySpan<char> piece, List<int> ids)
    {
        if (piece.Length == 1 && piece[0] < 128)
        {
            ids.Add(_byteToId[piece[0]]);
            return;
        }
        bool cacheable = piece.Length <= MaxCachedPieceLength;
        if (cacheable && _cacheLookup.TryGetValue(piece, out int[]? cached))
        {
            ids.AddRange(cached);
            return;
        }

        int byteCount = Encoding.UTF8.GetByteCount(piece);
        Span<byte> bytes = byteCount <= 512 ? stackalloc byte[byteCount] : new byte[byteCount];
        Encoding.UTF8.GetBytes(piece, bytes);
        Span<int> symbols = byteCount <= 512 ? stackalloc int[byteCount] : new int[byteCount];
        for (int i = 0; i < bytes.Length; i++) symbols[i] = _byteToId[bytes[i]];
        int count = BpeMerger.Merge(symbols, _merges);

        if (cacheable)
        {
            int[] result = symbols[..count].ToArray();
            if (_cacheCount >= MaxCacheEntries)
            {
                _cache.Clear();
                _cacheCount = 0;
            }
            if (_cacheLookup.TryAdd(piece, result)) Interlocked.Increment(ref _cacheCount);
            ids.AddRange(result);
        }
        else
        {
            foreach (int id in symbols[..count]) ids.Add(id);
        }
    }

    private protected override int? OrdinaryTokenId(string content)
    {
        byte[] wanted = Encoding.UTF8.GetBytes(content);
        for (int id = 0; id < _tokenBytes.Length; id++)
            if (_tokenBytes[id] is { } bytes && bytes.AsSpan().SequenceEqual(wanted)) return id;
        return null;
    }

    private protected override bool TryAppendOrdinaryBytes(int id, List<byte> bytes)
    {
        if ((uint)id >= (uint)_tokenBytes.Length || _tokenBytes[id] is not { } tokenBytes) return false;
        bytes.AddRange(tokenBytes);
        return true;
    }
}
