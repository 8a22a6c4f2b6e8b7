using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MoeCompiler.Runtime.Threading;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>
/// Scaled dot-product attention with grouped-query heads. One task per (query row, head): scores over the visible
/// keys, softmax, weighted sum of values, all in key order, so results do not depend on the thread count.
/// With many queries per key (prefill), keys are first transposed per kv head to [headDim, keys] so that 16 (or 8)
/// scores come out of one vector FMA chain with no horizontal sums; a single decoding query uses dot products.
/// </summary>
internal static unsafe class AttentionKernel
{
    private const int KeyBlock = 64;

    public static long ScratchFloats(int keys) => Padded(keys) + 64;
    public static long SharedFloats(int queries, int keys, int heads, int kvHeads, int headDim, KernelIsa isa)
        => UseTransposed(queries, heads, kvHeads, isa) ? (long)kvHeads * headDim * Padded(keys) : 0;

    private static int Padded(int keys) => (keys + KeyBlock - 1) / KeyBlock * KeyBlock;
    private static bool UseTransposed(int queries, int heads, int kvHeads, KernelIsa isa)
        => isa != KernelIsa.Scalar && queries * (heads / kvHeads) >= 8;

    public static void Run(WorkerPool pool, float** scratch, float* shared, KernelIsa isa, float* q, float* k, float* v, float* y,
        int queries, int keys, int heads, int kvHeads, int headDim, bool causal, int queryStart)
    {
        bool transposed = UseTransposed(queries, heads, kvHeads, isa);
        if (transposed)
        {
            var transpose = new TransposeJob { K = k, Kt = shared, Keys = keys, Padded = Padded(keys), HeadDim = headDim, KvWidth = kvHeads * headDim };
            pool.Run(kvHeads * (Padded(keys) / TransposeJob.Block), ref transpose);
        }
        var job = new Job
        {
            Q = q, K = k, V = v, Y = y, Queries = queries, Kt = transposed ? shared : null, Padded = Padded(keys),
            Heads = heads, Group = heads / kvHeads, HeadDim = headDim, KvWidth = kvHeads * headDim,
            Keys = keys, Causal = causal, QueryStart = queryStart, Scale = 1f / MathF.Sqrt(headDim), Scratch = scratch, Isa = isa,
        };
        pool.Run(queries * heads, ref job);
    }

    /// <summary>Kt[kvHead, d, s] = K[s, kvHead·headDim + d] for one kv head and a block of 16 keys (zero past the
    /// last key): whole cache lines on both sides.</summary>
    private struct TransposeJob : IParallelJob
    {
        public const int Block = 16;
        public float* K, Kt;
        public int Keys, Padded, HeadDim, KvWidth;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            int blocks = Padded / Block;
            int kvHead = index / blocks, s0 = index % blocks * Block;
            int count = Math.Clamp(Keys - s0, 0, Block);
            float* source = K + (long)s0 * KvWidth + kvHead * HeadDim;
            float* target = Kt + (long)kvHead * HeadDim * Padded + s0;
            for (int d = 0; d < HeadDim; d++)
            {
                float* row = target + (long)d * Padded;
                for (int s = 0; s < count; s++) row[s] = source[(long)s * KvWidth + d];
                for (int s = count; s < Block; s++) row[s] = 0;
            }
        }
    }

    private struct Job : IParallelJob
    {
        public float* Q, K, V, Y, Kt;
        public int Heads, Group, HeadDim, KvWidth, Keys, Padded, QueryStart, Queries;
        public bool Causal;
        public float Scale;
        public float** Scratch;
        public KernelIsa Isa;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            // Head-major order: consecutive tasks share one kv head's keys and values in cache.
            int h = index / Queries, t = index % Queries, kvHead = h / Group;
            int visible = Causal ? QueryStart + t + 1 : Keys;
            float* scores = Scratch[worker];
            float* query = Q + ((long)t * Heads + h) * HeadDim;
            if (Kt != null) TransposedScores(Isa, query, Kt + (long)kvHead * HeadDim * Padded, Padded, HeadDim, visible, Scale, scores);
            else
            {
                float* keys = K + kvHead * HeadDim;
                for (int s = 0; s < visible; s++) scores[s] = Gemm.DotF32(Isa, query, keys + (long)s * KvWidth, HeadDim) * Scale;
            }
            Elementwise.Softmax(Isa, scores, scores, visible);
            float* output = Y + ((long)t * Heads + h) * HeadDim;
            WeightedSum(Isa, scores, visible, V + kvHead * HeadDim, KvWidth, output, HeadDim);
        }
    }

    /// <summary>scores[s] = scale · Σ_d q[d]·kt[d·stride + s] for s &lt; visible (rounded up to a vector).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposedScores(KernelIsa isa, float* q, float* kt, int stride, int headDim, int visible, float scale, float* scores)
    {
        int s0 = 0;
        if (isa == KernelIsa.Avx512)
        {
            var k = Vector512.Create(scale);
            for (; s0 + 64 <= stride && s0 < visible; s0 += 64)
            {
                // Even and odd d in separate accumulators: eight FMA chains cover the FMA latency.
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
                float* column = kt + s0;
                int d = 0;
                for (; d + 2 <= headDim; d += 2, column += 2 * stride)
                {
                    var qd = Vector512.Create(q[d]);
                    var qe = Vector512.Create(q[d + 1]);
                    float* next = column + stride;
                    a0 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(column), a0);
                    a1 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(column + 16), a1);
                    a2 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(column + 32), a2);
                    a3 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(column + 48), a3);
                    b0 = Vector512.FusedMultiplyAdd(qe, Vector512.Load(next), b0);
                    b1 = Vector512.FusedMultiplyAdd(qe, Vector512.Load(next + 16), b1);
                    b2 = Vector512.FusedMultiplyAdd(qe, Vector512.Load(next + 32), b2);
                    b3 = Vector512.FusedMultiplyAdd(qe, Vector512.Load(next + 48), b3);
                }
                if (d < headDim)
                {
                    var qd = Vector512.Create(q[d]);
                    a0 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(column), a0);
                    a1 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(column + 16), a1);
                    a2 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(column + 32), a2);
                    a3 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(column + 48), a3);
                }
                a0 += b0;
                a1 += b1;
                a2 += b2;
                a3 += b3;
                (a0 * k).Store(scores + s0);
                (a1 * k).Store(scores + s0 + 16);
                (a2 * k).Store(scores + s0 + 32);
                (a3 * k).Store(scores + s0 + 48);
            }
        }
        else
        {
            var k = Vector256.Create(scale);
            for (; s0 + 32 <= stride && s0 < visible; s0 += 32)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                float* column = kt + s0;
                for (int d = 0; d < headDim; d++, column += stride)
                {
                    var qd = Vector256.Create(q[d]);
                    a0 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(column), a0);
                    a1 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(column + 8), a1);
                    a2 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(column + 16), a2);
                    a3 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(column + 24), a3);
                }
                (a0 * k).Store(scores + s0);
                (a1 * k).Store(scores + s0 + 8);
                (a2 * k).Store(scores + s0 + 16);
                (a3 * k).Store(scores + s0 + 24);
            }
        }
    }

    /// <summary>output = Σ_s p[s]·v[s], four keys per pass over the output, keys in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightedSum(KernelIsa isa, float* p, int count, float* v, int stride, float* output, int n)
    {
        new Span<float>(output, n).Clear();
        int s = 0;
        for (; s + 4 <= count; s += 4)
        {
            float* v0 = v + (long)s * stride, v1 = v0 + stride, v2 = v1 + stride, v3 = v2 + stride;
            float p0 = p[s], p1 = p[s + 1], p2 = p[s + 2], p3 = p[s + 3];
            int i = 0;
            if (isa == KernelIsa.Avx512)
            {
                Vector512<float> w0 = Vector512.Create(p0), w1 = Vector512.Create(p1), w2 = Vector512.Create(p2), w3 = Vector512.Create(p3);
                for (; i + 16 <= n; i += 16)
                {
                    // Pairwise, so the dependency on the running sum is one add per four keys.
                    var first = Vector512.FusedMultiplyAdd(Vector512.Load(v0 + i), w0, Vector512.Load(v1 + i) * w1);
                    var second = Vector512.FusedMultiplyAdd(Vector512.Load(v2 + i), w2, Vector512.Load(v3 + i) * w3);
                    (Vector512.Load(output + i) + (first + second)).Store(output + i);
                }
            }
            else if (isa == KernelIsa.Avx2)
            {
                Vector256<float> w0 = Vector256.Create(p0), w1 = Vector256.Create(p1), w2 = Vector256.Create(p2), w3 = Vector256.Create(p3);
                for (; i + 8 <= n; i += 8)
                {
                    var first = Vector256.FusedMultiplyAdd(Vector256.Load(v0 + i), w0, Vector256.Load(v1 + i) * w1);
                    var second = Vector256.FusedMultiplyAdd(Vector256.Load(v2 + i), w2, Vector256.Load(v3 + i) * w3);
                    (Vector256.Load(output + i) + (first + second)).Store(output + i);
                }
            }
            for (; i < n; i++)
            {
                float first = MathF.FusedMultiplyAdd(v0[i], p0, v1[i] * p1);
                float second = MathF.FusedMultiplyAdd(v2[i], p2, v3[i] * p3);
                output[i] += first + second;
            }
        }
        for (; s < count; s++)
        {
            float* row = v + (long)s * stride;
            for (int i = 0; i < n; i++) output[i] = MathF.FusedMultiplyAdd(row[i], p[s], output[i]);
        }
    }
}
