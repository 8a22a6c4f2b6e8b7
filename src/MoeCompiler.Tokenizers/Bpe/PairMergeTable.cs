using System.Numerics;
using System.Runtime.CompilerServices;

namespace MoeCompiler.Tokenizers.Bpe;

/// <summary>Open-addressing hash from an adjacent token pair (left id, right id) to the merge's rank (lower
/// merges first) and the id of the merged token. The whole BPE inner loop is lookups in this table.</summary>
internal sealed class PairMergeTable
{
    private const long Empty = -1;
    private long[] _keys;
    private int[] _ranks;
    private int[] _merged;
    private int _mask;

    public int Count { get; private set; }

    public PairMergeTable(int expectedCount)
    {
        int capacity = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, expectedCount * 2));
        _keys = new long[capacity];
        Array.Fill(_keys, Empty);
        _ranks = new int[capacity];
        _merged = new int[capacity];
        _mask = capacity - 1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Key(int left, int right) => ((long)(uint)left << 32) | (uint)right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Hash(long key)
    {
        ulong h = (ulong)key * 0x9E3779B97F4A7C15UL;
        return (int)(h >> 32);
    }

    /// <summary>Adds a merge unless the pair already has one with a lower or equal rank.</summary>
    public void Add(int left, int right, int rank, int mergedId)
    {
        if (left < 0 || right < 0) throw new ArgumentOutOfRangeException(nameof(left), "token ids must be non-negative");
        if ((Count + 1) * 2 > _keys.Length) Grow();
        long key = Key(left, right);
        int slot = Hash(key) & _mask;
        while (true)
        {
            long existing = _keys[slot];
            if (existing == Empty)
            {
                _keys[slot] = key;
                _ranks[slot] = rank;
                _merged[slot] = mergedId;
                Count++;
                return;
            }
            if (existing == key)
            {
                if (rank < _ranks[slot])
                {
                    _ranks[slot] = rank;
                    _merged[slot] = mergedId;
                }
                return;
            }
            slot = (slot + 1) & _mask;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGet(int left, int right, out int rank, out int mergedId)
    {
        if ((left | right) >= 0)
        {
            long key = Key(left, right);
            int slot = Hash(key) & _mask;
            long[] keys = _keys;
            while (true)
            {
                long existing = keys[slot];
                if (existing == key)
                {
                    rank = _ranks[slot];
                    mergedId = _merged[slot];
                    return true;
                }
                if (existing == Empty) break;
                slot = (slot + 1) & _mask;
            }
        }
        rank = 0;
        mergedId = 0;
        return false;
    }

    private void Grow()
    {
        long[] oldKeys = _keys;
        int[] oldRanks = _ranks, oldMerged = _merged;
        int capacity = oldKeys.Length * 2;
        _keys = new long[capacity];
        Array.Fill(_keys, Empty);
        _ranks = new int[capacity];
        _merged = new int[capacity];
        _mask = capacity - 1;
        Count = 0;
        for (int i = 0; i < oldKeys.Length; i++)
        {
            if (oldKeys[i] != Empty)
                Add((int)(oldKeys[i] >> 32), (int)oldKeys[i], oldRanks[i], oldMerged[i]);
        }
    }
}
