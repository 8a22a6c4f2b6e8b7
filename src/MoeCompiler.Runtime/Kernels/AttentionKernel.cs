using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MoeCompiler.Runtime.Threading;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>
/// Scaled dot-product attention with grouped-query heads. One task per (query row, head): scores over the visible
/// keys, softmax, weighted sum of values, all in key order, so results do not depend on the thread count.
/// With many queries per key (prefill), keys are first transposed per kv head to [headDim, keys]; a task then takes
/// four consecutive queries of one head, and every loaded vector of 16 (or 8) keys feeds eight FMA chains (two key
/// vectors × four queries) with no horizontal sums. A single decoding query uses dot products.
/// </summary>
internal static unsafe class AttentionKernel
{
    private const int KeyBlock = 64;
    /// <summary>Queries of one head that share each loaded key block when keys are transposed.</summary>
    private const int QueryBlock = 4;

    public static long ScratchFloats(int keys) => QueryBlock * (long)Padded(keys) + 64;
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
        pool.Run(transposed ? heads * ((queries + QueryBlock - 1) / QueryBlock) : queries * heads, ref job);
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

        private void ExecuteBlock(int index, int worker) => ExecuteBlockCore(in this, index, worker);

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            if (Kt != null)
            {
                ExecuteBlock(index, worker);
                return;
            }
            // Head-major order: consecutive tasks share one kv head's keys and values in cache.
            int h = index / Queries, t = index % Queries, kvHead = h / Group;
            int visible = Causal ? QueryStart + t + 1 : Keys;
            float* scores = Scratch[worker];
            float* query = Q + ((long)t * Heads + h) * HeadDim;
            float* keys = K + kvHead * HeadDim;
            for (int s = 0; s < visible; s++) scores[s] = Gemm.DotF32(Isa, query, keys + (long)s * KvWidth, HeadDim) * Scale;
            Elementwise.Softmax(Isa, scores, scores, visible);
            float* output = Y + ((long)t * Heads + h) * HeadDim;
            WeightedSum(Isa, scores, visible, V + kvHead * HeadDim, KvWidth, output, HeadDim);
        }
    }

    /// <summary>Up to four consecutive queries of one head: their score rows come from one pass over the
    /// transposed keys, then each row gets its own softmax and value sum.</summary>
    private static void ExecuteBlockCore(in Job job, int index, int worker)
    {
        int blocks = (job.Queries + QueryBlock - 1) / QueryBlock;
        int h = index / blocks, t0 = index % blocks * QueryBlock, kvHead = h / job.Group;
        int count = Math.Min(QueryBlock, job.Queries - t0);
        int lastVisible = job.Causal ? job.QueryStart + t0 + count : job.Keys;
        float* scores = job.Scratch[worker];
        var rows = stackalloc float*[QueryBlock];
        for (int j = 0; j < QueryBlock; j++) rows[j] = job.Q + ((long)(t0 + Math.Min(j, count - 1)) * job.Heads + h) * job.HeadDim;
        TransposedScores4(job.Isa, rows, job.Kt + (long)kvHead * job.HeadDim * job.Padded, job.Padded, job.HeadDim, lastVisible, job.Scale, scores);
        for (int j = 0; j < count; j++)
        {
            int t = t0 + j;
            int visible = job.Causal ? job.QueryStart + t + 1 : job.Keys;
            float* row = scores + (long)j * job.Padded;
            Elementwise.Softmax(job.Isa, row, row, visible);
            WeightedSum(job.Isa, row, visible, job.V + kvHead * job.HeadDim, job.KvWidth, job.Y + ((long)t * job.Heads + h) * job.HeadDim, job.HeadDim);
        }
    }

    /// <summary>scores[j·stride + s] = scale · Σ_d q_j[d]·kt[d·stride + s] for four queries, s below visible
    /// (rounded up to a key block); each key vector is loaded once for the four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposedScores4(KernelIsa isa, float** q, float* kt, int stride, int headDim, int visible, float scale, float* scores)
    {
        float* q0 = q[0], q1 = q[1], q2 = q[2], q3 = q[3];
        if (isa == KernelIsa.Avx512)
        {
            var k = Vector512.Create(scale);
            for (int s0 = 0; s0 < visible; s0 += 32)
            {
                Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, d0 = default, d1 = default;
                float* column = kt + s0;
                for (int d = 0; d < headDim; d++, column += stride)
                {
                    var k0 = Vector512.Load(column);
                    var k1 = Vector512.Load(column + 16);
                    var w = Vector512.Create(q0[d]);
                    a0 = Vector512.FusedMultiplyAdd(w, k0, a0);
                    a1 = Vector512.FusedMultiplyAdd(w, k1, a1);
                    w = Vector512.Create(q1[d]);
                    b0 = Vector512.FusedMultiplyAdd(w, k0, b0);
                    b1 = Vector512.FusedMultiplyAdd(w, k1, b1);
                    w = Vector512.Create(q2[d]);
                    c0 = Vector512.FusedMultiplyAdd(w, k0, c0);
                    c1 = Vector512.FusedMultiplyAdd(w, k1, c1);
                    w = Vector512.Create(q3[d]);
                    d0 = Vector512.FusedMultiplyAdd(w, k0, d0);
                    d1 = Vector512.FusedMultiplyAdd(w, k1, d1);
                }
                (a0 * k).Store(scores + s0);
                (a1 * k).Store(scores + s0 + 16);
                (b0 * k).Store(scores + stride + s0);
                (b1 * k).Store(scores + stride + s0 + 16);
                (c0 * k).Store(scores + 2 * stride + s0);
                (c1 * k).Store(scores + 2 * stride + s0 + 16);
                (d0 * k).Store(scores + 3 * stride + s0);
                (d1 * k).Store(scores + 3 * stride + s0 + 16);
            }
        }
        else
        {
            var k = Vector256.Create(scale);
            for (int s0 = 0; s0 < visible; s0 += 16)
            {
                Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, d0 = default, d1 = default;
                float* column = kt + s0;
                for (int d = 0; d < headDim; d++, column += stride)
                {
                    var k0 = Vector256.Load(column);
                    var k1 = Vector256.Load(column + 8);
                    var w = Vector256.Create(q0[d]);
                    a0 = Vector256.FusedMultiplyAdd(w, k0, a0);
                    a1 = Vector256.FusedMultiplyAdd(w, k1, a1);
                    w = Vector256.Create(q1[d]);
                    b0 = Vector256.FusedMultiplyAdd(w, k0, b0);
                    b1 = Vector256.FusedMultiplyAdd(w, k1, b1);
                    w = Vector256.Create(q2[d]);
                    c0 = Vector256.FusedMultiplyAdd(w, k0, c0);
                    c1 = Vector256.FusedMultiplyAdd(w, k1, c1);
                    w = Vector256.Create(q3[d]);
                    d0 = Vector256.FusedMultiplyAdd(w, k0, d0);
                    d1 = Vector256.FusedMultiplyAdd(w, k1, d1);
                }
                (a0 * k).Store(scores + s0);
                (a1 * k).Store(scores + s0 + 8);
                (b0 * k).Store(scores + stride + s0);
                (b1 * k).Store(scores + stride + s0 + 8);
                (c0 * k).Store(scores + 2 * stride + s0);
                (c1 * k).Store(scores + 2 * stride + s0 + 8);
                (d0 * k).Store(scores + 3 * stride + s0);
                (d1 * k).Store(scores + 3 * stride + s0 + 8);
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
