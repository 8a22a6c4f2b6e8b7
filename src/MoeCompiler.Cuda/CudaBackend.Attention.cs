using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MoeCompiler.Cuda.Native;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda;

// CudaBackend's attention: the tiled kernel's launch and its shared-memory sizing (the class and its state: CudaBackend.cs).
public sealed unsafe partial class CudaBackend
{
    // ---------------------------------------------------------------- attention

    public void Attention(Tensor q, Tensor k, Tensor v, Tensor y, int heads, int kvHeads, int headDim, bool causal, int queryStart)
    {
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0) throw new ArgumentException($"Attention: {heads} heads do not group over {kvHeads} kv heads");
        if (q.Columns != heads * headDim || y.Columns != heads * headDim || y.Rows != q.Rows)
            throw new ArgumentException($"Attention: q {q} / y {y} are not [T, {heads}·{headDim}]");
        if (k.Columns != kvHeads * headDim || v.Columns != kvHeads * headDim || k.Rows != v.Rows)
            throw new ArgumentException($"Attention: k {k} / v {v} are not [Tk, {kvHeads}·{headDim}]");
        if (headDim > 1024) throw new ArgumentOutOfRangeException(nameof(headDim), "head dim above 1024 is not supported");
        int tq = q.Rows, tk = k.Rows;
        Tensor qd = AsF32(Input(q)), kd = Input(k), vd = Input(v);
        // Keys and values are read as they are when both are bf16 (a bf16 KV cache changes every step, so it must
        // never go through the cached conversion of AsF32); anything else is read as f32.
        bool bf16 = kd.DType == DType.BF16 && vd.DType == DType.BF16;
        if (!bf16)
        {
            kd = AsF32(kd);
            vd = AsF32(vd);
        }
        string suffix = bf16 ? "_bf16" : "_f32";
        RequireDeviceOutput(y);
        if (tq == 0) return;
        float scale = 1.0f / MathF.Sqrt(headDim);
        bool decode = tq <= 4;
        if (!decode)
        {
            if (TiledAttentionShape(headDim, SharedMemoryLimit) is { } tiles)
            {
                Launch("attention_tiled" + suffix, (uint)((tq + tiles.QueryTile - 1) / tiles.QueryTile), (uint)heads, 1, AttentionBlock,
                    (uint)TiledAttentionSharedBytes(headDim, tiles.QueryTile, tiles.KeyTile),
                    qd, kd, vd, y, tq, tk, heads, kvHeads, headDim, causal ? 1 : 0, queryStart, scale, tiles.QueryTile, tiles.KeyTile);
                return;
            }
            long rowsShared = (long)(tk + headDim) * 4;
            if (rowsShared <= 48 * 1024 - 256) // static shared memory (the reduction scratch) counts too
            {
                Launch("attention_rows" + suffix, (uint)tq, (uint)heads, 1, AttentionBlock, (uint)rowsShared,
                    qd, kd, vd, y, tk, heads, kvHeads, headDim, causal ? 1 : 0, queryStart, scale);
                return;
            }
        }
        // Flash-decoding: split the keys into chunks across blocks, then combine.
        int splits = Math.Max(1, (tk + AttentionChunk - 1) / AttentionChunk);
        long slots = (long)tq * heads * splits;
        using var partialMax = NewScratch(slots * 4);
        using var partialSum = NewScratch(slots * 4);
        using var partialOut = NewScratch(slots * headDim * 4);
        Launch("attention_split" + suffix, (uint)splits, (uint)heads, (uint)tq, AttentionBlock, (uint)((headDim + AttentionChunk) * 4),
            qd, kd, vd, KernelArg.Pointer(partialMax.Pointer), KernelArg.Pointer(partialSum.Pointer), KernelArg.Pointer(partialOut.Pointer),
            tk, heads, kvHeads, headDim, causal ? 1 : 0, queryStart, scale, AttentionChunk);
        uint combineBlock = (uint)Math.Min(1024, (headDim + 31) / 32 * 32);
        Launch("attention_combine_f32", (uint)heads, (uint)tq, 1, combineBlock, 0,
            KernelArg.Pointer(partialMax.Pointer), KernelArg.Pointer(partialSum.Pointer), KernelArg.Pointer(partialOut.Pointer),
            y, heads, headDim, splits);
    }

    /// <summary>Dynamic shared memory a block may use: the opt-in maximum when the device has one, else 48 KiB.</summary>
    private int SharedMemoryLimit => Math.Max(48 * 1024, MaxSharedMemoryPerBlock) - 1024;

    /// <summary>Shared bytes of attention_tiled (attention.cu): Q, K (padded rows), V, scores, output, and m, l, α.</summary>
    internal static long TiledAttentionSharedBytes(int headDim, int queryTile, int keyTile) =>
        4L * ((long)queryTile * headDim + (long)keyTile * (headDim + 1) + (long)keyTile * headDim + (long)queryTile * keyTile
              + (long)queryTile * headDim + 3L * queryTile);

    /// <summary>
    /// The tile sizes of the tiled prefill kernel: 16 query rows per block and the largest key tile of 64, 32, 16
    /// or 8 rows that fits the shared-memory limit; null when even the smallest does not (huge head dims).
    /// </summary>
    internal static (int QueryTile, int KeyTile)? TiledAttentionShape(int headDim, int sharedLimitBytes)
    {
        const int queryTile = 16;
        foreach (int keyTile in (ReadOnlySpan<int>)[64, 32, 16, 8])
            if (TiledAttentionSharedBytes(headDim, queryTile, keyTile) <= sharedLimitBytes) return (queryTile, keyTile);
        return null;
    }
}
