using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MoeCompiler.Runtime.Threading;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>
/// Scaled dot-product attention with grouped-query heads over f32 or bf16 keys and values (<see cref="IKvElement"/>).
/// Results never depend on the thread count: every sum runs in a fixed order over a fixed partition of the keys.
/// <list type="bullet">
/// <item>One decoding query: the visible keys are cut into blocks of <see cref="DecodeBlock"/>; a task reads its
/// block's key and value rows front to back (all heads of a row at once, so memory is streamed, not strided) and
/// leaves per head a partial softmax (block max, sum of exponentials, weighted value sum); the partials are then
/// merged in block order, rescaled to the global max.</item>
/// <item>Many queries per key (prefill): keys are first transposed per kv head to [headDim, keys]; a task then takes
/// four consecutive queries of one head, and every loaded vector of 16 (or 8) keys feeds eight FMA chains (two key
/// vectors × four queries) with no horizontal sums.</item>
/// <item>Otherwise one task per (query row, head): scores, softmax, weighted sum of values, in key order.</item>
/// </list>
/// </summary>
internal static unsafe class AttentionKernel
{
    private const int KeyBlock = 64;
    /// <summary>Queries of one head that share each loaded key block when keys are transposed.</summary>
    private const int QueryBlock = 4;
    /// <summary>Keys per task when one query decodes: big enough to amortise a task, small enough that a 600-key
    /// cache still splits into ~20 tasks for the workers.</summary>
    public const int DecodeBlock = 32;

    public static long ScratchFloats(int keys, int heads) => Math.Max(QueryBlock * (long)Padded(keys), (long)heads * DecodeBlock) + 64;

    public static long SharedFloats(int queries, int keys, int heads, int kvHeads, int headDim, KernelIsa isa)
    {
        if (queries == 1) return DecodeBlocks(keys) * DecodeSlotFloats(heads, headDim);
        return UseTransposed(queries, heads, kvHeads, isa) ? (long)kvHeads * headDim * Padded(keys) : 0;
    }

    private static int Padded(int keys) => (keys + KeyBlock - 1) / KeyBlock * KeyBlock;
    private static int DecodeBlocks(int keys) => (keys + DecodeBlock - 1) / DecodeBlock;
    /// <summary>One decode block's partial result: heads·headDim weighted value sums, then heads maxima and heads sums.</summary>
    private static long DecodeSlotFloats(int heads, int headDim) => (long)heads * headDim + 2L * heads;
    private static bool UseTransposed(int queries, int heads, int kvHeads, KernelIsa isa)
        => isa != KernelIsa.Scalar && queries * (heads / kvHeads) >= 8;

    public static void Run(WorkerPool pool, float** scratch, float* shared, KernelIsa isa, float* q, byte* k, byte* v, bool bf16, float* y,
        int queries, int keys, int heads, int kvHeads, int headDim, bool causal, int queryStart)
    {
        if (bf16) Run<BF16Kv>(pool, scratch, shared, isa, q, k, v, y, queries, keys, heads, kvHeads, headDim, causal, queryStart);
        else Run<F32Kv>(pool, scratch, shared, isa, q, k, v, y, queries, keys, heads, kvHeads, headDim, causal, queryStart);
    }

    private static void Run<T>(WorkerPool pool, float** scratch, float* shared, KernelIsa isa, float* q, byte* k, byte* v, float* y,
        int queries, int keys, int heads, int kvHeads, int headDim, bool causal, int queryStart) where T : struct, IKvElement
    {
        if (queries == 1)
        {
            int visible = causal ? queryStart + 1 : keys;
            var decode = new DecodeJob<T>
            {
                Q = q, K = k, V = v, Partials = shared, Heads = heads, Group = heads / kvHeads, HeadDim = headDim,
                KvWidth = kvHeads * headDim, Visible = visible, Scale = 1f / MathF.Sqrt(headDim), Scratch = scratch, Isa = isa,
            };
            int blocks = DecodeBlocks(visible);
            pool.Run(blocks, ref decode);
            MergeDecodeBlocks(isa, shared, blocks, heads, headDim, y);
            return;
        }
        bool transposed = UseTransposed(queries, heads, kvHeads, isa);
        if (transposed)
        {
            var transpose = new TransposeJob<T> { K = k, Kt = shared, Keys = keys, Padded = Padded(keys), HeadDim = headDim, KvWidth = kvHeads * headDim };
            pool.Run(kvHeads * (Padded(keys) / TransposeJob<T>.Block), ref transpose);
        }
        var job = new Job<T>
        {
            Q = q, K = k, V = v, Y = y, Queries = queries, Kt = transposed ? shared : null, Padded = Padded(keys),
            Heads = heads, Group = heads / kvHeads, HeadDim = headDim, KvWidth = kvHeads * headDim,
            Keys = keys, Causal = causal, QueryStart = queryStart, Scale = 1f / MathF.Sqrt(headDim), Scratch = scratch, Isa = isa,
        };
        pool.Run(transposed ? heads * ((queries + QueryBlock - 1) / QueryBlock) : queries * heads, ref job);
    }

    /// <summary>One block of keys for the single decoding query: scores of every head, the block's softmax
    /// partials, and the probability-weighted sum of its value rows.</summary>
    private struct DecodeJob<T> : IParallelJob where T : struct, IKvElement
    {
        public float* Q, Partials;
        public byte* K, V;
        public int Heads, Group, HeadDim, KvWidth, Visible;
        public float Scale;
        public float** Scratch;
        public KernelIsa Isa;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            int s0 = index * DecodeBlock, count = Math.Min(DecodeBlock, Visible - s0);
            float* scores = Scratch[worker]; // [heads, DecodeBlock]
            for (int s = 0; s < count; s++)
            {
                long row = (long)(s0 + s) * KvWidth;
                for (int h = 0; h < Heads; h++)
                    scores[h * DecodeBlock + s] = T.Dot(Isa, Q + (long)h * HeadDim, K, row + (long)(h / Group) * HeadDim, HeadDim) * Scale;
            }
            float* sums = Partials + index * DecodeSlotFloats(Heads, HeadDim);
            float* maxima = sums + (long)Heads * HeadDim;
            float* totals = maxima + Heads;
            for (int h = 0; h < Heads; h++)
            {
                float* p = scores + h * DecodeBlock;
                float max = Elementwise.Max(Isa, p, count);
                maxima[h] = max;
                totals[h] = Elementwise.ExpShifted(Isa, p, p, count, max);
            }
            new Span<float>(sums, Heads * HeadDim).Clear();
            for (int s = 0; s < count; s++)
            {
                long row = (long)(s0 + s) * KvWidth;
                for (int h = 0; h < Heads; h++)
                    KvElement.AddScaled<T>(Isa, scores[h * DecodeBlock + s], V, row + (long)(h / Group) * HeadDim, sums + (long)h * HeadDim, HeadDim);
            }
        }
    }

    /// <summary>y_h = Σ_b e^(m_b − M)·o_b,h / Σ_b e^(m_b − M)·l_b,h over the decode blocks b in order, M = max_b m_b.</summary>
    private static void MergeDecodeBlocks(KernelIsa isa, float* partials, int blocks, int heads, int headDim, float* y)
    {
        long slot = DecodeSlotFloats(heads, headDim);
        for (int h = 0; h < heads; h++)
        {
            float max = float.NegativeInfinity;
            for (int b = 0; b < blocks; b++) max = Math.Max(max, partials[b * slot + (long)heads * headDim + h]);
            float* output = y + (long)h * headDim;
            new Span<float>(output, headDim).Clear();
            float total = 0;
            for (int b = 0; b < blocks; b++)
            {
                float* block = partials + b * slot;
                float weight = MathF.Exp(block[(long)heads * headDim + h] - max);
                total += weight * block[(long)heads * headDim + heads + h];
                KvElement.AddScaled<F32Kv>(isa, weight, (byte*)block, (long)h * headDim, output, headDim);
            }
            Elementwise.Apply(Elementwise.Op.Scale, isa, output, null, output, headDim, 1f / total);
        }
    }

    /// <summary>Kt[kvHead, d, s] = K[s, kvHead·headDim + d] for one kv head and a block of 16 keys (zero past the
    /// last key): whole cache lines on both sides.</summary>
    private struct TransposeJob<T> : IParallelJob where T : struct, IKvElement
    {
        public const int Block = 16;
        public byte* K;
        public float* Kt;
        public int Keys, Padded, HeadDim, KvWidth;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            int blocks = Padded / Block;
            int kvHead = index / blocks, s0 = index % blocks * Block;
            int count = Math.Clamp(Keys - s0, 0, Block);
            long source = (long)s0 * KvWidth + kvHead * HeadDim;
            float* target = Kt + (long)kvHead * HeadDim * Padded + s0;
            for (int d = 0; d < HeadDim; d++)
            {
                float* row = target + (long)d * Padded;
                for (int s = 0; s < count; s++) row[s] = T.Load(K, source + (long)s * KvWidth + d);
                for (int s = count; s < Block; s++) row[s] = 0;
            }
        }
    }

    private struct Job<T> : IParallelJob where T : struct, IKvElement
    {
        public float* Q, Y, Kt;
        public byte* K, V;
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
            long keys = (long)kvHead * HeadDim;
            for (int s = 0; s < visible; s++) scores[s] = T.Dot(Isa, query, K, keys + (long)s * KvWidth, HeadDim) * Scale;
            Elementwise.Softmax(Isa, scores, scores, visible);
            float* output = Y + ((long)t * Heads + h) * HeadDim;
            WeightedSum<T>(Isa, scores, visible, V, (long)kvHead * HeadDim, KvWidth, output, HeadDim);
        }
    }

    /// <summary>Up to four consecutive queries of one head: their score rows come from one pass over the
    /// transposed keys, then each row gets its own softmax and value sum.</summary>
    private static void ExecuteBlockCore<T>(in Job<T> job, int index, int worker) where T : struct, IKvElement
    {
        int blocks = (job.Queries + QueryBlock - 1) / QueryBlock;
        int h = index / blocks, t0 = index % blocks * QueryBlock, kvHead = h / job.Group;
        int count = Math.Min(QueryBlock, job.Queries - t0);
        int lastVisible = job.Causal ? job.QueryStart + t0 + count : job.Keys;
        float* scores = job.Scratch[worker];
        var rows = stackalloc float*[QueryBlock];
        for (int j = 0; j < QueryBlock; j++) rows[j] = job.Q + ((long)(t0 + Math.Min(j, count - 1)) * job.Heads + h) * job.HeadDim;
        TransposedScores4(job.Isa, rows, job.Kt + (long)kvHead * job.HeadDim * job.Padded, job.Padded, job.HeadDim, lastVisible, job.Scale, scores);
        if (count == QueryBlock && job.Isa == KernelIsa.Avx512 && SharedValueSums)
        {
            // Softmax per row, probabilities of the keys a row does not see set to zero, then one pass over the value
            // rows for all four queries.
            var outputs = stackalloc float*[QueryBlock];
            for (int j = 0; j < QueryBlock; j++)
            {
                int t = t0 + j;
                int visible = job.Causal ? job.QueryStart + t + 1 : job.Keys;
                float* row = scores + (long)j * job.Padded;
                Elementwise.Softmax(job.Isa, row, row, visible);
                for (int s = visible; s < lastVisible; s++) row[s] = 0;
                rows[j] = row;
                outputs[j] = job.Y + ((long)t * job.Heads + h) * job.HeadDim;
            }
            WeightedSum4<T>(rows, lastVisible, job.V, (long)kvHead * job.HeadDim, job.KvWidth, outputs, job.HeadDim);
            return;
        }
        for (int j = 0; j < count; j++)
        {
            int t = t0 + j;
            int visible = job.Causal ? job.QueryStart + t + 1 : job.Keys;
            float* row = scores + (long)j * job.Padded;
            Elementwise.Softmax(job.Isa, row, row, visible);
            WeightedSum<T>(job.Isa, row, visible, job.V, (long)kvHead * job.HeadDim, job.KvWidth, job.Y + ((long)t * job.Heads + h) * job.HeadDim, job.HeadDim);
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

    /// <summary>Benchmarks only (A/B in one process): false falls back to one value pass per query.</summary>
    internal static bool SharedValueSums = true;

    /// <summary>output_j = Σ_s p_j[s]·v[s] for four queries (AVX-512): each loaded vector of a value row feeds the four
    /// queries' accumulators, which stay in registers over all keys (64 value columns = 16 zmm per pass); every
    /// element is one FMA chain in key order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightedSum4<T>(float** p, int count, byte* v, long first, int stride, float** output, int n) where T : struct, IKvElement
    {
        float* p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3];
        float* o0 = output[0], o1 = output[1], o2 = output[2], o3 = output[3];
        int i = 0;
        for (; i + 64 <= n; i += 64)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
            long offset = first + i;
            for (int s = 0; s < count; s++, offset += stride)
            {
                var v0 = T.Load16(v, offset);
                var v1 = T.Load16(v, offset + 16);
                var v2 = T.Load16(v, offset + 32);
                var v3 = T.Load16(v, offset + 48);
                var w = Vector512.Create(p0[s]);
                a0 = Vector512.FusedMultiplyAdd(v0, w, a0); a1 = Vector512.FusedMultiplyAdd(v1, w, a1);
                a2 = Vector512.FusedMultiplyAdd(v2, w, a2); a3 = Vector512.FusedMultiplyAdd(v3, w, a3);
                w = Vector512.Create(p1[s]);
                b0 = Vector512.FusedMultiplyAdd(v0, w, b0); b1 = Vector512.FusedMultiplyAdd(v1, w, b1);
                b2 = Vector512.FusedMultiplyAdd(v2, w, b2); b3 = Vector512.FusedMultiplyAdd(v3, w, b3);
                w = Vector512.Create(p2[s]);
                c0 = Vector512.FusedMultiplyAdd(v0, w, c0); c1 = Vector512.FusedMultiplyAdd(v1, w, c1);
                c2 = Vector512.FusedMultiplyAdd(v2, w, c2); c3 = Vector512.FusedMultiplyAdd(v3, w, c3);
                w = Vector512.Create(p3[s]);
                d0 = Vector512.FusedMultiplyAdd(v0, w, d0); d1 = Vector512.FusedMultiplyAdd(v1, w, d1);
                d2 = Vector512.FusedMultiplyAdd(v2, w, d2); d3 = Vector512.FusedMultiplyAdd(v3, w, d3);
            }
            a0.Store(o0 + i); a1.Store(o0 + i + 16); a2.Store(o0 + i + 32); a3.Store(o0 + i + 48);
            b0.Store(o1 + i); b1.Store(o1 + i + 16); b2.Store(o1 + i + 32); b3.Store(o1 + i + 48);
            c0.Store(o2 + i); c1.Store(o2 + i + 16); c2.Store(o2 + i + 32); c3.Store(o2 + i + 48);
            d0.Store(o3 + i); d1.Store(o3 + i + 16); d2.Store(o3 + i + 32); d3.Store(o3 + i + 48);
        }
        for (; i + 16 <= n; i += 16)
        {
            Vector512<float> a = default, b = default, c = default, d = default;
            long offset = first + i;
            for (int s = 0; s < count; s++, offset += stride)
            {
                var x = T.Load16(v, offset);
                a = Vector512.FusedMultiplyAdd(x, Vector512.Create(p0[s]), a);
                b = Vector512.FusedMultiplyAdd(x, Vector512.Create(p1[s]), b);
                c = Vector512.FusedMultiplyAdd(x, Vector512.Create(p2[s]), c);
                d = Vector512.FusedMultiplyAdd(x, Vector512.Create(p3[s]), d);
            }
            a.Store(o0 + i); b.Store(o1 + i); c.Store(o2 + i); d.Store(o3 + i);
        }
        for (; i < n; i++)
        {
            float a = 0, b = 0, c = 0, d = 0;
            long offset = first + i;
            for (int s = 0; s < count; s++, offset += stride)
            {
                float x = T.Load(v, offset);
                a = MathF.FusedMultiplyAdd(x, p0[s], a);
                b = MathF.FusedMultiplyAdd(x, p1[s], b);
                c = MathF.FusedMultiplyAdd(x, p2[s], c);
                d = MathF.FusedMultiplyAdd(x, p3[s], d);
            }
            o0[i] = a; o1[i] = b; o2[i] = c; o3[i] = d;
        }
    }

    /// <summary>output = Σ_s p[s]·v[s], four keys per pass over the output, keys in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightedSum<T>(KernelIsa isa, float* p, int count, byte* v, long first, int stride, float* output, int n) where T : struct, IKvElement
    {
        new Span<float>(output, n).Clear();
        int s = 0;
        for (; s + 4 <= count; s += 4)
        {
            long v0 = first + (long)s * stride, v1 = v0 + stride, v2 = v1 + stride, v3 = v2 + stride;
            float p0 = p[s], p1 = p[s + 1], p2 = p[s + 2], p3 = p[s + 3];
            int i = 0;
            if (isa == KernelIsa.Avx512)
            {
                Vector512<float> w0 = Vector512.Create(p0), w1 = Vector512.Create(p1), w2 = Vector512.Create(p2), w3 = Vector512.Create(p3);
                for (; i + 16 <= n; i += 16)
                {
                    // Pairwise, so the dependency on the running sum is one add per four keys.
                    var pair = Vector512.FusedMultiplyAdd(T.Load16(v, v0 + i), w0, T.Load16(v, v1 + i) * w1);
                    var second = Vector512.FusedMultiplyAdd(T.Load16(v, v2 + i), w2, T.Load16(v, v3 + i) * w3);
                    (Vector512.Load(output + i) + (pair + second)).Store(output + i);
                }
            }
            else if (isa == KernelIsa.Avx2)
            {
                Vector256<float> w0 = Vector256.Create(p0), w1 = Vector256.Create(p1), w2 = Vector256.Create(p2), w3 = Vector256.Create(p3);
                for (; i + 8 <= n; i += 8)
                {
                    var pair = Vector256.FusedMultiplyAdd(T.Load8(v, v0 + i), w0, T.Load8(v, v1 + i) * w1);
                    var second = Vector256.FusedMultiplyAdd(T.Load8(v, v2 + i), w2, T.Load8(v, v3 + i) * w3);
                    (Vector256.Load(output + i) + (pair + second)).Store(output + i);
                }
            }
            for (; i < n; i++)
            {
                float pair = MathF.FusedMultiplyAdd(T.Load(v, v0 + i), p0, T.Load(v, v1 + i) * p1);
                float second = MathF.FusedMultiplyAdd(T.Load(v, v2 + i), p2, T.Load(v, v3 + i) * p3);
                output[i] += pair + second;
            }
        }
        for (; s < count; s++) KvElement.AddScaled<T>(isa, p[s], v, first + (long)s * stride, output, n);
    }
}
