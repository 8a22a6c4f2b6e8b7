using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Runtime.Kernels;

internal readonly unsafe partial struct PackedBF16
{
    /// <summary>Activation rows <see cref="AccumulateRows"/> takes at once (4 × 4 accumulators, 4 unpacked weight vectors).</summary>
    public const int DotRowsGroup = 4;

    /// <summary>Accumulator vectors one (weight row, group of up to four activation rows) pair keeps between chunks.</summary>
    public const int AccumulatorsPerGroup = DotRowsGroup * 4;

    /// <summary>
    /// Blocks of columns per chunk when <paramref name="rows"/> activation rows share each weight row: the rows'
    /// slices of one chunk (rows × chunk × 4 bytes ≤ 32 KiB) stay in L1 while the weight rows stream past them.
    /// Measured before chunking, on 5504-column weights: 2 rows (44 KiB of activations) took 2.3× one row and 4 rows
    /// 4.1×, while 2048 columns (4 rows: 32 KiB) took 1.03–1.2× (docs/performance.md, "Batched decode").
    /// </summary>
    public static int RowsChunkBlocks(int rows) => Math.Max(1, 8192 / (Block * Math.Max(1, rows)));

    /// <summary>
    /// <see cref="Dot"/> of one packed weight row with <paramref name="count"/> (1..4) activation rows
    /// <c>x + r·stride</c>, unpacking the weight row once for all of them. Each result is bit-identical to
    /// <see cref="Dot"/>: every row keeps its own four accumulators, fed in the same order, reduced and finished
    /// the same way.
    /// </summary>
    public void DotRows(float* x, long stride, int count, int row, float* results)
    {
        if (count < 1 || count > DotRowsGroup) throw new ArgumentOutOfRangeException(nameof(count));
        var accumulators = stackalloc Vector512<float>[AccumulatorsPerGroup];
        for (int a = 0; a < AccumulatorsPerGroup; a++) accumulators[a] = default;
        AccumulateRows(x, stride, count, row, 0, Blocks, accumulators);
        FinishRows(x, stride, count, row, accumulators, results);
    }

    /// <summary>
    /// Blocks [<paramref name="blockStart"/>, <paramref name="blockEnd"/>) of <see cref="Dot"/>'s loop for one packed
    /// weight row and <paramref name="count"/> (1..4) activation rows: the weight block is unpacked once and feeds
    /// every row's four accumulators (row r's in <c>accumulators[4r..4r+3]</c>, loaded at the start and stored at
    /// the end, so a row may be run in chunks of blocks with the same multiply-adds in the same order).
    /// </summary>
    public void AccumulateRows(float* x, long stride, int count, int row, int blockStart, int blockEnd, Vector512<float>* accumulators)
    {
        // One compiled loop per row count: no per-block tests of the count, fewer instructions per block.
        switch (count)
        {
            case 1: AccumulateRows<OneRow>(x, stride, row, blockStart, blockEnd, accumulators); break;
            case 2: AccumulateRows<TwoRows>(x, stride, row, blockStart, blockEnd, accumulators); break;
            case 3: AccumulateRows<ThreeRows>(x, stride, row, blockStart, blockEnd, accumulators); break;
            case 4: AccumulateRows<FourRows>(x, stride, row, blockStart, blockEnd, accumulators); break;
            default: throw new ArgumentOutOfRangeException(nameof(count));
        }
    }

    /// <summary>A row count known when the loop is compiled (the JIT specialises generic code per struct type).</summary>
    private interface IRowCount { static abstract int Count { get; } }
    private struct OneRow : IRowCount { public static int Count => 1; }
    private struct TwoRows : IRowCount { public static int Count => 2; }
    private struct ThreeRows : IRowCount { public static int Count => 3; }
    private struct FourRows : IRowCount { public static int Count => 4; }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AccumulateRows<TRows>(float* x, long stride, int row, int blockStart, int blockEnd, Vector512<float>* accumulators)
        where TRows : struct, IRowCount
    {
        int count = TRows.Count;
        var table = RowTable(row);
        byte* codes = _codes + ((long)row * Blocks + blockStart) * 32;
        byte* low = _low + ((long)row * Blocks + blockStart) * Block;
        // Several rows do 2–4× the arithmetic per weight byte, which leaves the hardware prefetcher too little lead
        // on weights streamed from memory: ask for the same blocks two weight rows ahead (what this task reads next,
        // unchunked or in chunks). Prefetches never fault, so running past the matrix's end is harmless.
        long lowAhead = 2L * Blocks * Block, codesAhead = 2L * Blocks * 32;
        float* x0 = x, x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        Vector512<float> a00 = accumulators[0], a01 = accumulators[1], a02 = accumulators[2], a03 = accumulators[3];
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        if (count > 1) { a10 = accumulators[4]; a11 = accumulators[5]; a12 = accumulators[6]; a13 = accumulators[7]; }
        if (count > 2) { a20 = accumulators[8]; a21 = accumulators[9]; a22 = accumulators[10]; a23 = accumulators[11]; }
        if (count > 3) { a30 = accumulators[12]; a31 = accumulators[13]; a32 = accumulators[14]; a33 = accumulators[15]; }
        var shifts = CodeShifts;
        int i = blockStart * Block;
        for (int b = blockStart; b < blockEnd; b++, i += Block, codes += 32, low += Block)
        {
            Sse.Prefetch0(low + lowAhead);
            Sse.Prefetch0(codes + codesAhead);
            UnpackBlock(table, shifts, codes, low, out var w0, out var w1, out var w2, out var w3);
            a00 = Avx512F.FusedMultiplyAdd(Vector512.Load(x0 + i), w0, a00);
            a01 = Avx512F.FusedMultiplyAdd(Vector512.Load(x0 + i + 16), w1, a01);
            a02 = Avx512F.FusedMultiplyAdd(Vector512.Load(x0 + i + 32), w2, a02);
            a03 = Avx512F.FusedMultiplyAdd(Vector512.Load(x0 + i + 48), w3, a03);
            // The count is a constant of this compiled loop: the tests below are not in the machine code.
            if (count > 1)
            {
                a10 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + i), w0, a10);
                a11 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + i + 16), w1, a11);
                a12 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + i + 32), w2, a12);
                a13 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + i + 48), w3, a13);
            }
            if (count > 2)
            {
                a20 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + i), w0, a20);
                a21 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + i + 16), w1, a21);
                a22 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + i + 32), w2, a22);
                a23 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + i + 48), w3, a23);
            }
            if (count > 3)
            {
                a30 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + i), w0, a30);
                a31 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + i + 16), w1, a31);
                a32 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + i + 32), w2, a32);
                a33 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + i + 48), w3, a33);
            }
        }
        accumulators[0] = a00; accumulators[1] = a01; accumulators[2] = a02; accumulators[3] = a03;
        if (count > 1) { accumulators[4] = a10; accumulators[5] = a11; accumulators[6] = a12; accumulators[7] = a13; }
        if (count > 2) { accumulators[8] = a20; accumulators[9] = a21; accumulators[10] = a22; accumulators[11] = a23; }
        if (count > 3) { accumulators[12] = a30; accumulators[13] = a31; accumulators[14] = a32; accumulators[15] = a33; }
    }

    /// <summary>The end of <see cref="Dot"/> for the rows of <see cref="AccumulateRows"/> once every block is in.</summary>
    public void FinishRows(float* x, long stride, int count, int row, Vector512<float>* accumulators, float* results)
    {
        for (int r = 0; r < count; r++)
        {
            var a = accumulators + 4 * r;
            results[r] = Finish(x + r * stride, row, Blocks * Block, a[0], a[1], a[2], a[3]);
        }
    }

    /// <summary>The end of <see cref="Dot"/> after the packed blocks: tail columns, reduction, exceptions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private float Finish(float* x, int row, int i, Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
    {
        ushort* tail = _tail + (long)row * TailColumns - i;
        for (; i + 16 <= Columns; i += 16) a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), Gemm.WidenBF16(tail + i), a0);
        float sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        for (; i < Columns; i++) sum = MathF.FusedMultiplyAdd(x[i], NumberFormats.BF16ToFloat(tail[i]), sum);
        for (int e = _exceptionStart[row], end = _exceptionStart[row + 1]; e < end; e++)
            sum = MathF.FusedMultiplyAdd(x[_exceptionColumn[e]], NumberFormats.BF16ToFloat(_exceptionValue[e]), sum);
        return sum;
    }
}
