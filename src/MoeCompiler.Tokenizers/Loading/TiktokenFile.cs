using System.Text;
using MoeCompiler.Tokenizers.Bpe;
using MoeCompiler.Tokenizers.Splitting;

namespace MoeCompiler.Tokenizers.Loading;

/// <summary>Reads tiktoken's "base64-bytes rank" files and builds the pair table: in tiktoken a pair of adjacent
/// tokens merges when their concatenated bytes are a token, and the token's rank is the merge priority.</summary>
internal static class TiktokenFile
{
    public static byte[][] ReadRanks(string path)
    {
        string[] lines = TokenizerFiles.ReadLines(path, TokenizerFiles.MaxVocabularyBytes);
        // Ranks number the tokens 0..n-1 (one a line): a rank past the line count would only make the table sparse
        // and large, so it is refused before anything is sized by it.
        int maxRank = lines.Length;

        var byRank = new List<byte[]?>(lines.Length);
        for (int lineNumber = 0; lineNumber < lines.Length; lineNumber++)
        {
            string line = lines[lineNumber].Trim();
            if (line.Length == 0) continue;
            int space = line.IndexOf(' ');
            if (space <= 0 || !int.TryParse(line.AsSpan(space + 1), System.Globalization.NumberStyles.None,
                    System.Globalization.CultureInfo.InvariantCulture, out int rank))
                throw new TokenizerLoadException(path, $"line {lineNumber + 1} is not \"<base64> <rank>\"");
            if (rank >= maxRank)
                throw new TokenizerLoadException(path, $"line {lineNumber + 1} gives rank {rank}, but a file of {lines.Length} lines can only number ranks below {maxRank}");
            byte[] bytes;
            try { bytes = Convert.FromBase64String(line[..space]); }
            catch (FormatException e) { throw new TokenizerLoadException(path, $"line {lineNumber + 1} has invalid base64", e); }
            while (byRank.Count <= rank) byRank.Add(null);
            if (byRank[rank] is not null) throw new TokenizerLoadException(path, $"rank {rank} appears twice");
            byRank[rank] = bytes;
        }
        return byRank.Select(b => b ?? []).ToArray();
    }

    public static ByteLevelBpeTokenizer Build(string path, IReadOnlyList<AddedToken> specials, int? bosId, IReadOnlyList<int> eosIds, int? vocabSize = null)
    {
        byte[][] ranks = ReadRanks(path);
        var idOf = new Dictionary<string, int>(ranks.Length);
        for (int id = 0; id < ranks.Length; id++)
            if (ranks[id].Length > 0) idOf[Encoding.Latin1.GetString(ranks[id])] = id;
        var lookup = idOf.GetAlternateLookup<ReadOnlySpan<char>>();

        var byteToId = new int[256];
        Span<char> one = stackalloc char[1];
        for (int b = 0; b < 256; b++)
        {
            one[0] = (char)b;
            if (!lookup.TryGetValue(one, out byteToId[b]))
                throw new TokenizerLoadException(path, $"the single byte 0x{b:X2} has no rank");
        }

        var merges = new PairMergeTable(ranks.Length * 2);
        char[] buffer = new char[256];
        for (int id = 0; id < ranks.Length; id++)
        {
            byte[] bytes = ranks[id];
            if (bytes.Length < 2) continue;
            if (bytes.Length > buffer.Length) buffer = new char[bytes.Length];
            for (int i = 0; i < bytes.Length; i++) buffer[i] = (char)bytes[i];
            ReadOnlySpan<char> token = buffer.AsSpan(0, bytes.Length);
            for (int split = 1; split < bytes.Length; split++)
            {
                if (lookup.TryGetValue(token[..split], out int left) && lookup.TryGetValue(token[split..], out int right))
                    merges.Add(left, right, id, id);
            }
        }

        int size = vocabSize ?? Math.Max(ranks.Length, specials.Count == 0 ? 0 : specials.Max(s => s.Id) + 1);
        byte[]?[] tokenBytes = ranks.Select(b => b.Length == 0 ? null : b).ToArray();
        return new ByteLevelBpeTokenizer(tokenBytes, byteToId, merges, QwenSplitter.Instance, specials, size, bosId, eosIds, normalizeNfc: true);
    }
}
