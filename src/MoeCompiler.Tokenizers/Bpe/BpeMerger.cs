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

    // O(n log n) with a binary min-heap of candidate merges keyed by (rank, left position) packed in a long,
    // validated lazily when popped: for long pieces (CJK runs, SentencePiece chunks spanning a sentence).
    private static int MergeByHeap(Span<int> symbols, PairMergeTable table)
    {
        int n = symbols.Length;
        int[] rented = System.Buffers.ArrayPool<int>.Shared.Rent(n * 3);
        long[] heap = System.Buffers.ArrayPool<long>.Shared.Rent(n * 3);
        try
        {
            Span<int> ids = rented.AsSpan(0, n);
            Span<int> next = rented.AsSpan(n, n);
            Span<int> prev = rented.AsSpan(2 * n, n);
            symbols.CopyTo(ids);
            int heapCount = 0;
            for (int i = 0; i < n; i++)
            {
                next[i] = i + 1 < n ? i + 1 : -1;
                prev[i] = i - 1;
                if (i + 1 < n && table.TryGet(ids[i], ids[i + 1], out int rank, out _))
                    heap[heapCount++] = Pack(rank, i);
            }
            for (int i = heapCount / 2 - 1; i >= 0; i--) SiftDown(heap, heapCount, i);

            while (heapCount > 0)
            {
                long top = heap[0];
                heap[0] = heap[--heapCount];
                SiftDown(heap, heapCount, 0);
                int left = (int)(top & 0xFFFFFFFF), rank = (int)(top >>> 32);
                // The entry is stale unless the pair now at `left` still merges with this rank. (A different
                // pair with the same rank at the same position is the same candidate, so merging it is right.)
                int right = next[left];
                if (ids[left] == Dead || right < 0) continue;
                if (!table.TryGet(ids[left], ids[right], out int currentRank, out int merged) || currentRank != rank) continue;

                ids[left] = merged;
                ids[right] = Dead;
                int after = next[right];
                next[left] = after;
                if (after >= 0) prev[after] = left;
                int before = prev[left];
                if (before >= 0 && table.TryGet(ids[before], merged, out int r1, out _)) Push(heap, ref heapCount, Pack(r1, before));
                if (after >= 0 && table.TryGet(merged, ids[after], out int r2, out _)) Push(heap, ref heapCount, Pack(r2, left));
            }

            int count = 0;
            for (int i = 0; i >= 0; i = next[i]) symbols[count++] = ids[i];
            return count;
        }
        finally
        {
            System.Buffers.ArrayPool<int>.Shared.Return(rented);
            System.Buffers.ArrayPool<long>.Shared.Return(heap);
        }
    }

    private const int Dead = int.MinValue;

    private static long Pack(int rank, int position) => ((long)rank << 32) | (uint)position;

    private static void Push(long[] heap, ref int count, long value)
    {
        int i = count++;
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (heap[parent] <= value) break;
            heap[i] = heap[parent];
            i = parent;
        }
        heap[i] = value;
    }

    private static void SiftDown(long[] heap, int count, int i)
    {
        long value = heap[i];
        while (true)
        {
            int child = 2 * i + 1;
            if (child >= count) break;
            if (child + 1 < count && heap[child + 1] < heap[child]) child++;
            if (heap[child] >= value) break;
            heap[i] = heap[child];
            i = child;
        }
        heap[i] = value;
    }
}
