using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MoeCompiler.Runtime.Threading;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>
/// y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias) for f32 activations and f32 / bf16 / f16 / int8 weights.
/// Two algorithms:
/// <list type="bullet">
/// <item>GEMM (M &gt; <see cref="MatVecMaxRows"/>): Goto-style blocking. For each block of <see cref="ColumnBlock"/>
/// weight rows and <see cref="DepthBlock"/> columns, one parallel loop packs (and widens) the weights into NR-wide
/// panels shared by all threads (kept in L3), then a second loop gives each task a few MR-row slices of x, packed
/// into its own scratch, and runs the MR×NR register-tile kernel over every panel.</item>
/// <item>Matrix-vector (decoding, few rows): streams every weight row once, widening in registers; bandwidth bound.</item>
/// </list>
/// Every output element is owned by one task per loop and summed in a fixed order (depth blocks in sequence, k
/// within a block in sequence), so results do not depend on the thread count.
/// </summary>
internal static unsafe partial class Gemm
{
    public const int MatVecMaxRows = 4;
    /// <summary>Largest depth block (sizes the per-thread scratch).</summary>
    public const int MaxDepthBlock = 1024;
    /// <summary>Depth (K) per block. 256 (a packed 32-wide weight panel of 32 KiB, L1-resident) was measured against
    /// 1024 and is slower here (1024 is 1.08–1.23× faster; docs/performance.md, "Prefill: where the time goes"), so
    /// 1024 stays. Mutable only so that benchmarks can A/B it in one process (<c>MoeCompiler.Benchmarks gemmab</c>);
    /// the product never changes it.</summary>
    internal static int DepthBlock = 1024;
    /// <summary>Benchmarks only: when set, <see cref="Run"/> adds the stopwatch ticks of its packing and compute loops.</summary>
    internal static bool Profile;
    internal static long PackTicks, ComputeTicks;
    /// <summary>Weight rows packed per block: DepthBlock × ColumnBlock f32 (6 MiB) stays in L3 while every row block streams it.</summary>
    public const int ColumnBlock = 1536;
    /// <summary>Row slices (of MR rows) per compute task: small enough to balance two threads on M ≈ 500.</summary>
    private const int SlicesPerTask = 12;
    private const int PanelsPerPackTask = 4;
    /// <summary>Compute tasks per pool thread that a block aims for (see <see cref="SplitPanels"/>).</summary>
    private const int TasksPerThread = 4;
    /// <summary>Compute tasks split the packed panels when the row groups are few. Mutable only for benchmark A/B.</summary>
    internal static bool SplitPanels = true;
    /// <summary>Weight bytes one matrix-vector task streams (rounded to whole rows; at most a share of
    /// 1 / (2 · threads) of the rows, so that a late thread still finds work). Measured on streamed weights
    /// (docs/performance.md, "Task order"): 32 rows per task, as before, read q4 at 0.75–0.9× the speed of 256 KiB.</summary>
    internal static int MatVecTaskBytes = 256 * 1024;

    /// <summary>Rows per matrix-vector task when set (&gt; 0) instead of <see cref="MatVecTaskBytes"/>; results do not
    /// depend on it (every row is one task's, summed alone). A field for benchmark A/B.</summary>
    internal static int MatVecRowsPerTask;

    /// <summary>Matrix-vector tasks claimed in the pool's contiguous order (each thread streams one unbroken range of
    /// weight rows) rather than alternating; results do not depend on it. A field for benchmark A/B.</summary>
    internal static bool ContiguousMatVecTasks = true;

    /// <summary>Rows per task of a matrix-vector product of <paramref name="w"/> on <paramref name="threads"/> threads.</summary>
    internal static int MatVecTaskRows(WeightView w, int threads)
    {
        if (MatVecRowsPerTask > 0) return MatVecRowsPerTask;
        long byBytes = Math.Max(1, MatVecTaskBytes / Math.Max(1, w.RowBytes));
        long share = Math.Max(1, (w.Rows + 2L * threads - 1) / (2L * threads));
        return (int)Math.Min(byBytes, share);
    }

    /// <summary>The blocked integer kernels called once per weight row (as before 2026-12-06 03:15) instead of with the
    /// row loop inside the kernel (<see cref="IntegerRowsBlocked"/>); the same bits; a field for the intdot A/B.</summary>
    internal static bool PerRowIntegerCalls;

    private static (int Mr, int Nr) Tile(KernelIsa isa) => isa switch
    {
        KernelIsa.Avx512 => (12, 32),
        KernelIsa.Avx2 => (6, 16),
        _ => (4, 16),
    };

    /// <summary>Per-thread scratch floats for a product of this shape.</summary>
    public static long ScratchFloats(int m, int k, KernelIsa isa)
    {
        if (m <= MatVecMaxRows) return k + 64;
        var (mr, nr) = Tile(isa);
        return Math.Max((long)SlicesPerTask * mr * MaxDepthBlock + mr * nr, 8L * MaxDepthBlock) + 64;
    }

    /// <summary>Shared floats (the packed weight block) for a product of this shape.</summary>
    public static long SharedFloats(int m, int n, KernelIsa isa) => SharedFloats(m, n, 0, isa, integerDot: false);

    /// <summary>Shared floats for a product of this shape; with <paramref name="integerDot"/> a matrix-vector product
    /// keeps its quantised activations there.</summary>
    public static long SharedFloats(int m, int n, int k, KernelIsa isa, bool integerDot, bool integerGemm = false)
    {
        if (m <= MatVecMaxRows) return integerDot ? (QuantizedActivationBytes(m, k) + 3) / 4 : 0;
        if (integerGemm) return (IntegerGemmBytes(m, n, k) + 3) / 4;
        int nr = Tile(isa).Nr;
        return (long)ColumnBlock * MaxDepthBlock;
    }

    /// <param name="integerDot">Matrix-vector products (m ≤ <see cref="MatVecMaxRows"/>) of int8/q4 weights
    /// (<see cref="SupportsIntegerDot"/>) quantise the activations and sum integer dot products (Gemm.IntegerDot.cs);
    /// <paramref name="shared"/> then holds <see cref="SharedFloats(int, int, int, KernelIsa, bool)"/> floats.</param>
    /// <param name="vnni">The integer dots use AvxVnni <c>vpdpbusd</c> (else <c>vpmaddubsw</c> + <c>vpmaddwd</c>).</param>
    /// <param name="integerGemm">Larger products (m &gt; <see cref="MatVecMaxRows"/>) of int8/q4 weights take the integer
    /// GEMM (Gemm.IntegerGemm.cs) where <see cref="UsesIntegerGemm"/> allows it; <paramref name="shared"/> then holds
    /// <see cref="SharedFloats(int, int, int, KernelIsa, bool, bool)"/> floats.</param>
    public static void Run(WorkerPool pool, float** scratch, float* shared, KernelIsa isa, float* x, int m, int k, WeightView w, float* bias, float* y,
        bool integerDot = false, bool vnni = false, bool integerGemm = false)
    {
        int n = w.Rows;
        if (m <= MatVecMaxRows)
        {
            // A few rows: each weight row streamed once for all of them, the same kernels as LinearRows.
            RunRowIndependent(pool, scratch, isa, x, m, k, w, bias, y, shared, integerDot, vnni);
            return;
        }
        if (integerGemm && UsesIntegerGemm(isa, vnni, w))
        {
            RunIntegerGemm(pool, isa, x, m, k, w, bias, y, (byte*)shared);
            return;
        }
        var (mr, nr) = Tile(isa);
        int slices = (m + mr - 1) / mr;
        int depthBlock = Math.Clamp(DepthBlock, 8, MaxDepthBlock);
        bool profile = Profile;
        for (int jc = 0; jc < n; jc += ColumnBlock)
        {
            int nc = Math.Min(ColumnBlock, n - jc);
            int panels = (nc + nr - 1) / nr;
            for (int pc = 0; pc < k; pc += depthBlock)
            {
                int kc = Math.Min(depthBlock, k - pc);
                var pack = new PackJob { W = w, Nr = nr, Isa = isa, Jc = jc, Nc = nc, Pc = pc, Kc = kc, Packed = shared, Scratch = scratch };
                long t0 = profile ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                pool.Run((panels + PanelsPerPackTask - 1) / PanelsPerPackTask, ref pack);
                long t1 = profile ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
                int sliceGroups = (slices + SlicesPerTask - 1) / SlicesPerTask;
                // Split the panels too when the row groups alone are too few (or too uneven: 51 slices are 12+12+12+12+3)
                // to keep every thread busy to the end; which task computes a tile does not change its sums.
                int panelGroups = SplitPanels ? Math.Clamp((TasksPerThread * pool.Threads + sliceGroups - 1) / sliceGroups, 1, panels) : 1;
                int panelsPerTask = (panels + panelGroups - 1) / panelGroups;
                panelGroups = (panels + panelsPerTask - 1) / panelsPerTask;
                var compute = new ComputeJob
                {
                    X = x, M = m, K = k, N = n, Bias = bias, Y = y, PackedB = shared, Scratch = scratch, Isa = isa,
                    Mr = mr, Nr = nr, Jc = jc, Nc = nc, Pc = pc, Kc = kc, PanelGroups = panelGroups, PanelsPerTask = panelsPerTask,
                };
                pool.Run(sliceGroups * panelGroups, ref compute);
                if (profile)
                {
                    PackTicks += t1 - t0;
                    ComputeTicks += System.Diagnostics.Stopwatch.GetTimestamp() - t1;
                }
            }
        }
    }

    /// <summary>Packs (and widens) the weight columns [pc, pc+kc) of a few NR-row panels into the shared block.</summary>
    private struct PackJob : IParallelJob
    {
        public WeightView W;
        public int Nr, Jc, Nc, Pc, Kc;
        public KernelIsa Isa;
        public float* Packed;
        public float** Scratch;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            int first = index * PanelsPerPackTask * Nr;
            int count = Math.Min(PanelsPerPackTask * Nr, Nc - first);
            PackWeights(W, Jc + first, count, Pc, Kc, Nr, Packed + (long)first * Kc, Scratch[worker], Isa);
        }
    }

    /// <summary>A few MR-row slices of x times the whole packed weight block, accumulated into y.</summary>
    private struct ComputeJob : IParallelJob
    {
        public float* X, Bias, Y, PackedB;
        public int M, K, N, Mr, Nr, Jc, Nc, Pc, Kc, PanelGroups, PanelsPerTask;
        public float** Scratch;
        public KernelIsa Isa;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            int group = index / PanelGroups, panelGroup = index % PanelGroups;
            int ic = group * SlicesPerTask * Mr, mc = Math.Min(SlicesPerTask * Mr, M - ic);
            int columnStart = panelGroup * PanelsPerTask * Nr, columnEnd = Math.Min(Nc, columnStart + PanelsPerTask * Nr);
            float* packedA = Scratch[worker];
            float* tile = packedA + SlicesPerTask * Mr * MaxDepthBlock;
            PackActivations(X, K, ic, mc, Pc, Kc, Mr, packedA, Isa != KernelIsa.Scalar);
            bool first = Pc == 0;
            for (int jr = columnStart; jr < columnEnd; jr += Nr)
            {
                float* b = PackedB + (long)jr * Kc;
                for (int ir = 0; ir < mc; ir += Mr)
                {
                    float* a = packedA + (long)ir * Kc;
                    switch (Isa)
                    {
                        case KernelIsa.Avx512: MicroAvx512(Kc, a, b, tile); break;
                        case KernelIsa.Avx2: MicroAvx2(Kc, a, b, tile); break;
                        default: MicroScalar(Kc, a, b, tile, Mr, Nr); break;
                    }
                    int row = ic + ir, column = Jc + jr;
                    WriteTile(tile, Mr, Nr, Y + (long)row * N + column, N, Math.Min(Mr, M - row), Math.Min(Nr, Nc - jr),
                        first, Bias == null ? null : Bias + column, Isa);
                }
            }
        }
    }

    /// <summary>Weight rows [n0, n0+nc), columns [pc, pc+kc) as f32 panels of nr columns: panel[k·nr + j] = W[n0+j, pc+k];
    /// columns past the block are zero. <paramref name="decoded"/> holds 8 widened rows of kc.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackWeights(WeightView w, int n0, int nc, int pc, int kc, int nr, float* packed, float* decoded, KernelIsa isa)
    {
        bool f32 = w.DType == Tensors.DType.F32;
        var rows = stackalloc float*[8];
        for (int jp = 0; jp < nc; jp += nr)
        {
            float* panel = packed + (long)jp * kc;
            int columns = Math.Min(nr, nc - jp);
            for (int j0 = 0; j0 < nr; j0 += 8)
            {
                int count = Math.Clamp(columns - j0, 0, 8);
                if (count == 0)
                {
                    for (int p = 0; p < kc; p++) new Span<float>(panel + (long)p * nr + j0, 8).Clear();
                    continue;
                }
                for (int j = 0; j < count; j++)
                {
                    if (f32) rows[j] = w.F32Row(n0 + jp + j0 + j) + pc;
                    else
                    {
                        rows[j] = decoded + j * kc;
                        w.DecodeRow(n0 + jp + j0 + j, pc, kc, rows[j], isa);
                    }
                }
                float* target = panel + j0;
                int p0 = 0;
                if (count == 8 && isa != KernelIsa.Scalar)
                    for (; p0 + 8 <= kc; p0 += 8) Transpose8x8(rows, p0, target + (long)p0 * nr, nr);
                for (int p = p0; p < kc; p++)
                {
                    float* t = target + (long)p * nr;
                    for (int j = 0; j < count; j++) t[j] = rows[j][p];
                    for (int j = count; j < 8; j++) t[j] = 0;
                }
            }
        }
    }

    /// <summary>target[c·stride + r] = rows[r][p0 + c] for an 8×8 block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float** rows, int p0, float* target, int stride)
    {
        var r0 = Vector256.Load(rows[0] + p0); var r1 = Vector256.Load(rows[1] + p0);
        var r2 = Vector256.Load(rows[2] + p0); var r3 = Vector256.Load(rows[3] + p0);
        var r4 = Vector256.Load(rows[4] + p0); var r5 = Vector256.Load(rows[5] + p0);
        var r6 = Vector256.Load(rows[6] + p0); var r7 = Vector256.Load(rows[7] + p0);
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Vector256.Store(Avx.Permute2x128(u0, u4, 0x20), target);
        Vector256.Store(Avx.Permute2x128(u1, u5, 0x20), target + stride);
        Vector256.Store(Avx.Permute2x128(u2, u6, 0x20), target + 2 * stride);
        Vector256.Store(Avx.Permute2x128(u3, u7, 0x20), target + 3 * stride);
        Vector256.Store(Avx.Permute2x128(u0, u4, 0x31), target + 4 * stride);
        Vector256.Store(Avx.Permute2x128(u1, u5, 0x31), target + 5 * stride);
        Vector256.Store(Avx.Permute2x128(u2, u6, 0x31), target + 6 * stride);
        Vector256.Store(Avx.Permute2x128(u3, u7, 0x31), target + 7 * stride);
    }

    /// <summary>x rows [ic, ic+mc), columns [pc, pc+kc) as slices of mr rows: slice[k·mr + r]; rows past M are zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackActivations(float* x, int ldx, int ic, int mc, int pc, int kc, int mr, float* packed, bool vector)
    {
        var rows = stackalloc float*[8];
        for (int ir = 0; ir < mc; ir += mr)
        {
            float* slice = packed + (long)ir * kc;
            int count = Math.Min(mr, mc - ir);
            int r0 = 0;
            if (vector)
                for (; r0 + 8 <= count; r0 += 8)
                {
                    for (int r = 0; r < 8; r++) rows[r] = x + (long)(ic + ir + r0 + r) * ldx + pc;
                    int p0 = 0;
                    for (; p0 + 8 <= kc; p0 += 8) Transpose8x8(rows, p0, slice + p0 * mr + r0, mr);
                    for (int p = p0; p < kc; p++)
                        for (int r = 0; r < 8; r++) slice[p * mr + r0 + r] = rows[r][p];
                }
            for (int r = r0; r < count; r++)
            {
                float* source = x + (long)(ic + ir + r) * ldx + pc;
                float* target = slice + r;
                for (int p = 0; p < kc; p++) target[p * mr] = source[p];
            }
            for (int r = count; r < mr; r++)
                for (int p = 0; p < kc; p++) slice[p * mr + r] = 0;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroScalar(int kc, float* a, float* b, float* tile, int mr, int nr)
    {
        for (int i = 0; i < mr * nr; i++) tile[i] = 0;
        for (int k = 0; k < kc; k++)
        {
            for (int r = 0; r < mr; r++)
            {
                float ar = a[r];
                float* t = tile + r * nr;
                for (int j = 0; j < nr; j++) t[j] = MathF.FusedMultiplyAdd(ar, b[j], t[j]);
            }
            a += mr;
            b += nr;
        }
    }

    /// <summary>First K block: y = bias + tile; later blocks: y += tile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WriteTile(float* tile, int mr, int nr, float* y, int ldy, int rows, int columns, bool first, float* bias, KernelIsa isa)
    {
        for (int r = 0; r < rows; r++)
        {
            float* t = tile + r * nr, target = y + (long)r * ldy;
            int j = 0;
            if (isa == KernelIsa.Avx512)
                for (; j + 16 <= columns; j += 16)
                {
                    var baseline = first ? (bias == null ? Vector512<float>.Zero : Vector512.Load(bias + j)) : Vector512.Load(target + j);
                    Vector512.Store(baseline + Vector512.Load(t + j), target + j);
                }
            else if (isa == KernelIsa.Avx2)
                for (; j + 8 <= columns; j += 8)
                {
                    var baseline = first ? (bias == null ? Vector256<float>.Zero : Vector256.Load(bias + j)) : Vector256.Load(target + j);
                    Vector256.Store(baseline + Vector256.Load(t + j), target + j);
                }
            for (; j < columns; j++) target[j] = (first ? (bias == null ? 0 : bias[j]) : target[j]) + t[j];
        }
    }
}
