using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Runtime.Threading;

namespace MoeCompiler.Runtime.Kernels;

internal static unsafe partial class Gemm
{
    /// <summary>Few activation rows: each weight row is streamed from memory once and widened in registers; the
    /// other activation rows reuse it from L1.</summary>
    private struct MatVecJob : IParallelJob
    {
        public float* X, Bias, Y;
        public int M, K, N;
        public WeightView W;
        public float** Scratch;
        public KernelIsa Isa;
        /// <summary>Set (Values non-null) when the integer path runs: the activation rows quantised once for all tasks.</summary>
        public QuantizedActivations Quantized;
        public bool Vnni;
        public int RowsPerTask;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            int start = index * RowsPerTask, end = Math.Min(N, start + RowsPerTask);
            float* decoded = Scratch[worker];
            if (Quantized.Values != null)
            {
                IntegerRows(start, end);
                return;
            }
            // Quantised weights are widened in registers again for every activation row: measured, that beats one
            // decode into L1 followed by f32 dot products for 2–4 rows (docs/performance.md).
            bool widenInRegisters = W.DType switch
            {
                DType.BF16 when !W.Packed.IsEmpty => Isa == KernelIsa.Avx512,
                DType.F32 or DType.BF16 => true,
                DType.I8 => W.GroupSize == K || W.GroupSize % 16 == 0,
                DType.Q4 => true,
                _ => false,
            };
            // Several rows of packed bf16 (batched decode): every weight block is unpacked once for all rows;
            // every result equals the one-row Dot bit for bit.
            if (M > 1 && widenInRegisters && W.DType == DType.BF16 && !W.Packed.IsEmpty)
            {
                PackedRows(start, end);
                return;
            }
            for (int j = start; j < end; j++)
            {
                if (!widenInRegisters) W.DecodeRow(j, 0, K, decoded, Isa);
                float b = Bias == null ? 0 : Bias[j];
                for (int i = 0; i < M; i++)
                {
                    float* x = X + (long)i * K;
                    float dot = widenInRegisters ? DotRow(Isa, x, W, j) : DotF32(Isa, x, decoded, K);
                    Y[(long)i * N + j] = dot + b;
                }
            }
        }

        /// <summary>Weight rows [start, end) against every quantised activation row (<see cref="QuantizeActivations"/>);
        /// a row's result is the same whatever rows the task or the other activation rows are.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void IntegerRows(int start, int end)
        {
            bool q4 = W.DType == DType.Q4;
            int r = 0;
            for (; r + 2 <= M; r += 2) IntegerRowsBlocked(Isa, Vnni, q4, two: true, Quantized, r, W, start, end, Bias, Y, N);
            if (r < M) IntegerRowsBlocked(Isa, Vnni, q4, two: false, Quantized, r, W, start, end, Bias, Y, N);
        }

        /// <summary>
        /// Weight rows [start, end) against every activation row, packed bf16. Activation rows go in bands of up to
        /// <see cref="PackedRowsBand"/>; for each band, tiles of <see cref="PackedRowsTile"/> weight rows run chunk by
        /// chunk of columns (<see cref="PackedBF16.RowsChunkBlocks"/>), so the band's slice of a chunk stays in L1
        /// while the tile's weight rows stream past it; each (weight row, activation row) keeps its four
        /// accumulators across chunks, so the multiply-adds and their order are those of the one-row Dot.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void PackedRows(int start, int end)
        {
            const int groupsPerBand = PackedRowsBand / PackedBF16.DotRowsGroup;
            var packed = W.Packed;
            var accumulators = stackalloc Vector512<float>[PackedRowsTile * groupsPerBand * PackedBF16.AccumulatorsPerGroup];
            float* results = stackalloc float[PackedBF16.DotRowsGroup];
            int blocks = packed.Blocks;
            for (int band = 0; band < M; band += PackedRowsBand)
            {
                int bandRows = Math.Min(PackedRowsBand, M - band);
                int groups = (bandRows + PackedBF16.DotRowsGroup - 1) / PackedBF16.DotRowsGroup;
                int chunk = PackedBF16.RowsChunkBlocks(bandRows);
                for (int tile = start; tile < end; tile += PackedRowsTile)
                {
                    int tileEnd = Math.Min(end, tile + PackedRowsTile);
                    int used = (tileEnd - tile) * groups * PackedBF16.AccumulatorsPerGroup;
                    for (int a = 0; a < used; a++) accumulators[a] = default;
                    // One pass when the band's whole rows fit (always for width ≤ 2048 and ≤ 4 rows).
                    for (int b0 = 0; b0 < blocks || b0 == 0; b0 += chunk)
                    {
                        int b1 = Math.Min(blocks, b0 + chunk);
                        for (int j = tile; j < tileEnd; j++)
                            for (int g = 0; g < groups; g++)
                            {
                                int first = band + g * PackedBF16.DotRowsGroup;
                                int count = Math.Min(PackedBF16.DotRowsGroup, M - first);
                                packed.AccumulateRows(X + (long)first * K, K, count, j, b0, b1,
                                    accumulators + ((j - tile) * groups + g) * PackedBF16.AccumulatorsPerGroup);
                            }
                        if (b1 >= blocks) break;
                    }
                    for (int j = tile; j < tileEnd; j++)
                    {
                        float bj = Bias == null ? 0 : Bias[j];
                        for (int g = 0; g < groups; g++)
                        {
                            int first = band + g * PackedBF16.DotRowsGroup;
                            int count = Math.Min(PackedBF16.DotRowsGroup, M - first);
                            packed.FinishRows(X + (long)first * K, K, count, j,
                                accumulators + ((j - tile) * groups + g) * PackedBF16.AccumulatorsPerGroup, results);
                            for (int r = 0; r < count; r++) Y[(long)(first + r) * N + j] = results[r] + bj;
                        }
                    }
                }
            }
        }
    }

    /// <summary>Activation rows that <see cref="MatVecJob.PackedRows"/> runs against a weight tile at once.</summary>
    private const int PackedRowsBand = 8;

    /// <summary>Weight rows per tile of <see cref="MatVecJob.PackedRows"/>: their accumulators (8 rows × 2 groups ×
    /// 16 vectors, 16 KiB) stay in L1 between chunks.</summary>
    private const int PackedRowsTile = 8;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotRow(KernelIsa isa, float* x, WeightView w, int row)
    {
        long offset = (long)row * w.Columns;
        int k = w.Columns;
        switch (w.DType)
        {
            case DType.F32: return DotF32(isa, x, (float*)w.Data + offset, k);
            case DType.BF16: return w.Packed.IsEmpty ? DotBF16(isa, x, (ushort*)w.Data + offset, k) : w.Packed.Dot(x, row);
            case DType.Q4: return DotQ4(isa, x, w.Data + offset / 2, w.RowScales(row));
            default:
                {
                    sbyte* q = (sbyte*)w.Data + offset;
                    if (w.GroupSize == k) return DotI8(isa, x, q, k) * w.Scale(row, 0);
                    if (w.GroupSize == WeightQuantizerGroup && isa != KernelIsa.Scalar) return DotI8Groups32(isa, x, q, w.Columns / 32, w.RowScales(row));
                    float sum = 0;
                    for (int g = 0; g < w.GroupsPerRow; g++)
                        sum += DotI8(isa, x + g * w.GroupSize, q + g * w.GroupSize, w.GroupSize) * w.Scale(row, g);
                    return sum;
                }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotF32(KernelIsa isa, float* x, float* w, int k)
    {
        int i = 0;
        float sum = 0;
        if (isa == KernelIsa.Avx512)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 64 <= k; i += 64)
            {
                a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), Vector512.Load(w + i), a0);
                a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 16), Vector512.Load(w + i + 16), a1);
                a2 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 32), Vector512.Load(w + i + 32), a2);
                a3 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 48), Vector512.Load(w + i + 48), a3);
            }
            for (; i + 16 <= k; i += 16) a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), Vector512.Load(w + i), a0);
            sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        else if (isa == KernelIsa.Avx2)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 32 <= k; i += 32)
            {
                a0 = Fma.MultiplyAdd(Vector256.Load(x + i), Vector256.Load(w + i), a0);
                a1 = Fma.MultiplyAdd(Vector256.Load(x + i + 8), Vector256.Load(w + i + 8), a1);
                a2 = Fma.MultiplyAdd(Vector256.Load(x + i + 16), Vector256.Load(w + i + 16), a2);
                a3 = Fma.MultiplyAdd(Vector256.Load(x + i + 24), Vector256.Load(w + i + 24), a3);
            }
            for (; i + 8 <= k; i += 8) a0 = Fma.MultiplyAdd(Vector256.Load(x + i), Vector256.Load(w + i), a0);
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; i < k; i++) sum = MathF.FusedMultiplyAdd(x[i], w[i], sum);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotBF16(KernelIsa isa, float* x, ushort* w, int k)
    {
        int i = 0;
        float sum = 0;
        if (isa == KernelIsa.Avx512)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 64 <= k; i += 64)
            {
                a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), WidenBF16(w + i), a0);
                a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 16), WidenBF16(w + i + 16), a1);
                a2 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 32), WidenBF16(w + i + 32), a2);
                a3 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 48), WidenBF16(w + i + 48), a3);
            }
            for (; i + 16 <= k; i += 16) a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), WidenBF16(w + i), a0);
            sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        else if (isa == KernelIsa.Avx2)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 32 <= k; i += 32)
            {
                a0 = Fma.MultiplyAdd(Vector256.Load(x + i), WidenBF16Avx2(w + i), a0);
                a1 = Fma.MultiplyAdd(Vector256.Load(x + i + 8), WidenBF16Avx2(w + i + 8), a1);
                a2 = Fma.MultiplyAdd(Vector256.Load(x + i + 16), WidenBF16Avx2(w + i + 16), a2);
                a3 = Fma.MultiplyAdd(Vector256.Load(x + i + 24), WidenBF16Avx2(w + i + 24), a3);
            }
            for (; i + 8 <= k; i += 8) a0 = Fma.MultiplyAdd(Vector256.Load(x + i), WidenBF16Avx2(w + i), a0);
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; i < k; i++) sum = MathF.FusedMultiplyAdd(x[i], NumberFormats.BF16ToFloat(w[i]), sum);
        return sum;
    }

    /// <summary>Σ x·q over raw int8 values; the caller applies the scale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotI8(KernelIsa isa, float* x, sbyte* q, int k)
    {
        int i = 0;
        float sum = 0;
        if (isa == KernelIsa.Avx512)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 64 <= k; i += 64)
            {
                // Weights are one contiguous stream across rows: fetch 2 KiB ahead so short rows do not stall at row starts.
                Sse.Prefetch0(q + i + 2048);
                a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), WidenI8(Vector128.Load(q + i)), a0);
                a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 16), WidenI8(Vector128.Load(q + i + 16)), a1);
                a2 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 32), WidenI8(Vector128.Load(q + i + 32)), a2);
                a3 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 48), WidenI8(Vector128.Load(q + i + 48)), a3);
            }
            for (; i + 16 <= k; i += 16) a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), WidenI8(Vector128.Load(q + i)), a0);
            sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        else if (isa == KernelIsa.Avx2)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 32 <= k; i += 32)
            {
                a0 = Fma.MultiplyAdd(Vector256.Load(x + i), WidenI8Avx2(q + i), a0);
                a1 = Fma.MultiplyAdd(Vector256.Load(x + i + 8), WidenI8Avx2(q + i + 8), a1);
                a2 = Fma.MultiplyAdd(Vector256.Load(x + i + 16), WidenI8Avx2(q + i + 16), a2);
                a3 = Fma.MultiplyAdd(Vector256.Load(x + i + 24), WidenI8Avx2(q + i + 24), a3);
            }
            for (; i + 8 <= k; i += 8) a0 = Fma.MultiplyAdd(Vector256.Load(x + i), WidenI8Avx2(q + i), a0);
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; i < k; i++) sum = MathF.FusedMultiplyAdd(x[i], q[i], sum);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> WidenBF16(ushort* p)
        => Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load(p)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> WidenBF16Avx2(ushort* p)
        => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Vector128.Load(p)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> WidenI8(Vector128<sbyte> bytes)
        => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(bytes));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> WidenI8Avx2(sbyte* p)
        => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(p));
}
