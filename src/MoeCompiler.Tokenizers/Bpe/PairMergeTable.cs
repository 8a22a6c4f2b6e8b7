using System.Numerics;
using System.Runtime.CompilerServices;

namespace MoeCompiler.Tokenizers.Bpe;

/// <summary>Open-addressing hash from an adjacent token pair (left id, right id) to the merge's rank (lower
/// merges first) and the id of the merged token. The whole BPE inner loop is lookups in this table, so a
/// slot keeps key, rank and result together (one cache line touched per probe) and the slot index is the
/// top bits of a Fibonacci hash of the packed pair.</summary>
internal sealed class PairMergeTable
{
    private const long Empty = -1;

    private struct Slot
    {
        public long Key;
        public int Rank;
        public int Merged;
    }

    private Slot[] _slots = [];
    private int _shift;

    public int Count { get; private set; }

    public PairMergeTable(int expectedCount)
    {
        Allocate((int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, expectedCount * 2)));
    }

    private void Allocate(int capacity)
    {
        _slots = new Slot[capacity];
        for (int i = 0; i < _slots.Length; i++) _slots[i].Key = Empty;
        _shift = 64 - BitOperations.Log2((uint)capacity);
        Count = 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Key(int left, int right) => ((long)(uint)left << 32) | (uint)right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int SlotOf(long key) => (int)(((ulong)key * 0x9E3779B97F4A7C15UL) >> _shift);

    /// <summary>Adds a merge unless the pair already has one with a lower or equal rank.</summary>
    public void Add(int left, int right, int rank, int mergedId)
    {
        if (left < 0 || right < 0) throw new ArgumentOutOfRangeException(nameof(left), "token ids must be non-negative");
        if ((Count + 1) * 10 > _slots.Length * 7) Grow();
        long key = Key(left, right);
        int mask = _slots.Length - 1;
        for (int slot = SlotOf(key); ; slot = (slot + 1) & mask)
        {
            ref Slot s = ref _slots[slot];
            if (s.Key == Empty)
            {
                s.Key = key;
                s.Rank = rank;
                s.Merged = mergedId;
                Count++;
                return;
            }
            if (s.Key == key)
            {
                if (rank < s.Rank)
                {
                    s.Rank = rank;
                    s.Merged = mergedId;
                }
                return;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGet(int left, int right, out int rank, out int mergedId)
    {
        if ((left | right) >= 0)
        {
            long key = Key(left, right);
            Slot[] slots = _slots;
            int mask = slots.Length - 1;
            for (int slot = SlotOf(key); ; slot = (slot + 1) & mask)
            {
                ref Slot s = ref slots[slot];
                if (s.Key == key)
                {
                    rank = s.Rank;
                    mergedId = s.Merged;
                    return true;
                }
                if (s.Key == Empty) break;
            }
        }
        rank = 0;
        mergedId = 0;
        return false;
    }

    private void Grow()
    {
        Slot[] old = _slots;
        Allocate(old.Length * 2);
        foreach (Slot s in old)
        {
            if (s.Key != Empty) Add((int)(s.Key >> 32), (int)s.Key, s.Rank, s.Merged);
        }
    }
}
