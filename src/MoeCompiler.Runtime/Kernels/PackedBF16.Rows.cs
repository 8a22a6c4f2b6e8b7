using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Runtime.Kernels;

internal readonly unsafe partial struct PackedBF16
{
    /// <summary>Activation rows <see cref="DotRows"/> takes at once (4 × 4 accumulators, 4 unpacked weight vectors).</summary>
    public const int DotRowsGroup = 4;

    /// <summary>
    /// <see cref="Dot"/> of one packed weight row with <paramref name="count"/> (1..4) activation rows
    /// <c>x + r·stride</c>, unpacking the weight row once for all of them (batched decode: the unpacking, not the
    /// memory, is what a second row would otherwise pay again). Each result is bit-identical to <see cref="Dot"/>:
    /// every row keeps its own four accumulators, fed in the same order, reduced and finished the same way.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void DotRows(float* x, long stride, int count, int row, float* results)
    {
        if (count < 1 || count > DotRowsGroup) throw new ArgumentOutOfRangeException(nameof(count));
        if (count == 1)
        {
            results[0] = Dot(x, row);
            return;
        }
        var table = RowTable(row);
        byte* codes = _codes + (long)row * Blocks * 32;
        byte* low = _low + (long)row * Blocks * Block;
        float* x0 = x, x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride;
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        int i = 0;
        for (int b = 0; b < Blocks; b++, i += Block, codes += 32, low += Block)
        {
            UnpackBlock(table, codes, low, out var w0, out var w1, out var w2, out var w3);
            a00 = Avx512F.FusedMultiplyAdd(Vector512.Load(x0 + i), w0, a00);
            a01 = Avx512F.FusedMultiplyAdd(Vector512.Load(x0 + i + 16), w1, a01);
            a02 = Avx512F.FusedMultiplyAdd(Vector512.Load(x0 + i + 32), w2, a02);
            a03 = Avx512F.FusedMultiplyAdd(Vector512.Load(x0 + i + 48), w3, a03);
            a10 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + i), w0, a10);
            a11 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + i + 16), w1, a11);
            a12 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + i + 32), w2, a12);
            a13 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + i + 48), w3, a13);
            // The count is the same for the whole row: these branches are always predicted.
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
        results[0] = Finish(x0, row, i, a00, a01, a02, a03);
        results[1] = Finish(x1, row, i, a10, a11, a12, a13);
        if (count > 2) results[2] = Finish(x2, row, i, a20, a21, a22, a23);
        if (count > 3) results[3] = Finish(x3, row, i, a30, a31, a32, a33);
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
