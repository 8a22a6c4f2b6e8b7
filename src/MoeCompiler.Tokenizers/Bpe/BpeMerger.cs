namespace MoeCompiler.Tokenizers.Bpe;

/// <summary>Byte-pair merging of one piece: repeatedly merge the adjacent pair with the lowest rank, the
/// leftmost one on ties, until no adjacent pair has a merge. Symbols with negative ids never merge.</summary>
internal static class BpeMerger
{
    private const int HeapThreshold = 24;

    /// <summary>Merges <paramref name="symbols"/> in place; returns the number of symbols left.</summary>
    public static int Merge(Span<int> symbols, PairMergeTable table)
    {
        return symbols.Length <= HeapThreshold ? MergeByScan(symbols, table) : MergeByHeap(symbols, table);
    }

    // O(n²) but with tiny constants: best for the short pieces that make up nearly all text.
    private static int MergeByScan(Span<int> symbols, PairMergeTable table)
    {
        int count = symbols.Length;
        Span<int> ranks = stackalloc int[HeapThreshold];
        Span<int> merged = stackalloc int[HeapThreshold];
        for (int i = 0; i + 1 < count; i++)
            ranks[i] = table.TryGet(symbols[i], symbols[i + 1], out int r, out merged[i]) ? r : int.MaxValue;

        while (count > 1)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < count; i++)
            {
                if (ranks[i] < bestRank)
                {
                    bestRank = ranks[i];
                    best = i;
                }
            }
            if (best < 0) break;

            symbols[best] = merged[best];
            for (int i = best + 1; i + 1 < count; i++)
            {
                symbols[i] = symbols[i + 1];
                ranks[i] = ranks[i + 1];
                merged[i] = merged[i + 1];
            }
            count--;
            if (best + 1 < count)
                ranks[best] = table.TryGet(symbols[best], symbols[best + 1], out int r, out merged[best]) ? r : int.MaxValue;
            if (best > 0)
                ranks[best - 1] = table.TryGet(symbols[best - 1], symbols[best], out int r, out merged[best - 1]) ? r : int.MaxValue;
        }
        return count;
    }

    // O(n log n) with a binary heap of candidate merges, validated lazily when popped: for long pieces
    // (CJK runs, SentencePiece chunks that span a whole sentence).
    private static int MergeByHeap(Span<int> symbols, PairMergeTable table)
    {
        int n = symbols.Length;
        var ids = symbols.ToArray();
        var next = new int[n];
        var prev = new int[n];
        for (int i = 0; i < n; i++)
        {
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
        }
        var heap = new PriorityQueue<Candidate, (int Rank, int Position)>(n);
        for (int i = 0; i + 1 < n; i++)
            Push(heap, table, ids, i, i + 1);

        while (heap.TryDequeue(out Candidate c, out _))
        {
            // Stale if either side was merged away or changed since the candidate was queued.
            if (ids[c.Left] != c.LeftId || next[c.Left] != c.Right || ids[c.Right] != c.RightId) continue;
            ids[c.Left] = c.MergedId;
            int after = next[c.Right];
            next[c.Left] = after;
            if (after >= 0) prev[after] = c.Left;
            ids[c.Right] = int.MinValue;
            next[c.Right] = -2;
            if (prev[c.Left] >= 0) Push(heap, table, ids, prev[c.Left], c.Left);
            if (after >= 0) Push(heap, table, ids, c.Left, after);
        }

        int count = 0;
        for (int i = 0; i >= 0; i = next[i])
            symbols[count++] = ids[i];
        return count;
    }

    private static void Push(PriorityQueue<Candidate, (int, int)> heap, PairMergeTable table, int[] ids, int left, int right)
    {
        if (table.TryGet(ids[left], ids[right], out int rank, out int merged))
            heap.Enqueue(new Candidate(left, right, ids[left], ids[right], merged), (rank, left));
    }

    private readonly record struct Candidate(int Left, int Right, int LeftId, int RightId, int MergedId);
}
