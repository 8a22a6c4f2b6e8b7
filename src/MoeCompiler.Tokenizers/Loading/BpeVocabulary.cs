using MoeCompiler.Tokenizers.Bpe;
using MoeCompiler.Tokenizers.Splitting;

namespace MoeCompiler.Tokenizers.Loading;

/// <summary>Builds tokenizers from a string vocabulary plus an ordered merge list (vocab.json + merges.txt,
/// or the "model" of a Hugging Face tokenizer.json).</summary>
internal static class BpeVocabulary
{
    private const int MaxTokenId = 10_000_000; // far above any real vocabulary; guards against absurd allocations

    private static int VocabularySize(string path, IReadOnlyDictionary<string, int> vocab, IReadOnlyList<AddedToken> added)
    {
        int max = -1;
        foreach (int id in vocab.Values) max = Math.Max(max, id);
        foreach (AddedToken a in added) max = Math.Max(max, a.Id);
        if (max >= MaxTokenId) throw new TokenizerLoadException(path, $"token id {max} is implausibly large");
        if (vocab.Values.Any(id => id < 0) || added.Any(a => a.Id < 0)) throw new TokenizerLoadException(path, "a token has a negative id");
        return max + 1;
    }

    public static PairMergeTable BuildMerges(string path, IReadOnlyDictionary<string, int> vocab, IReadOnlyList<(string Left, string Right)> merges)
    {
        var table = new PairMergeTable(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (left, right) = merges[rank];
            if (!vocab.TryGetValue(left, out int leftId) || !vocab.TryGetValue(right, out int rightId))
                throw new TokenizerLoadException(path, $"merge {rank} (\"{left} {right}\") uses a token that is not in the vocabulary");
            if (vocab.TryGetValue(left + right, out int mergedId))
                table.Add(leftId, rightId, rank, mergedId);
        }
        return table;
    }

    public static ByteLevelBpeTokenizer ByteLevel(string path, IReadOnlyDictionary<string, int> vocab, IReadOnlyList<(string, string)> merges,
        PieceSplitter splitter, IReadOnlyList<AddedToken> added, int? bosId, IReadOnlyList<int> eosIds, bool nfc)
    {
        int size = VocabularySize(path, vocab, added);
        var tokenBytes = new byte[]?[size];
        var addedIds = new HashSet<int>(added.Select(a => a.Id));
        foreach (var (token, id) in vocab)
        {
            if (id < 0) throw new TokenizerLoadException(path, $"token \"{token}\" has a negative id");
            if (addedIds.Contains(id)) continue;
            tokenBytes[id] = Gpt2ByteMap.ToBytes(token)
                ?? throw new TokenizerLoadException(path, $"token \"{token}\" (id {id}) is not a byte-level token");
        }
        var byteToId = new int[256];
        for (int b = 0; b < 256; b++)
        {
            if (!vocab.TryGetValue(Gpt2ByteMap.ByteToChar[b].ToString(), out byteToId[b]))
                throw new TokenizerLoadException(path, $"the single byte 0x{b:X2} is not in the vocabulary");
        }
        return new ByteLevelBpeTokenizer(tokenBytes, byteToId, BuildMerges(path, vocab, merges), splitter, added, size, bosId, eosIds, nfc);
    }

    public static SentencePieceBpeTokenizer SentencePiece(string path, IReadOnlyDictionary<string, int> vocab, IReadOnlyList<(string, string)> merges,
        bool byteFallback, string? unkToken, bool addDummyPrefix, IReadOnlyList<AddedToken> added, int? bosId, IReadOnlyList<int> eosIds)
    {
        int size = VocabularySize(path, vocab, added);
        var pieces = new string[size];
        foreach (var (token, id) in vocab)
        {
            if (id < 0) throw new TokenizerLoadException(path, $"token \"{token}\" has a negative id");
            pieces[id] = token;
        }
        foreach (AddedToken token in added) pieces[token.Id] ??= token.Content;
        int[]? fallback = byteFallback ? ByteFallbackIds(path, vocab) : null;
        int unkId = unkToken is not null && vocab.TryGetValue(unkToken, out int u) ? u : -1;
        if (fallback is null && unkId < 0)
            throw new TokenizerLoadException(path, "the vocabulary has neither byte fallback nor an unknown token");
        return new SentencePieceBpeTokenizer(pieces, BuildMerges(path, vocab, merges), fallback, unkId, addDummyPrefix,
            removeExtraWhitespace: false, added, size, bosId, eosIds);
    }

    public static int[] ByteFallbackIds(string path, IReadOnlyDictionary<string, int> vocab)
    {
        var ids = new int[256];
        for (int b = 0; b < 256; b++)
        {
            if (!vocab.TryGetValue($"<0x{b:X2}>", out ids[b]))
                throw new TokenizerLoadException(path, $"byte fallback is on but <0x{b:X2}> is not in the vocabulary");
        }
        return ids;
    }
}
