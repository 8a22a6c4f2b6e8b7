using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MoeCompiler.Runtime.Threading;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>
/// The integer prefill GEMM for grouped int8 and q4 weights (docs/quantization.md, "Kernels"): y[M, N] = x[M, K] ·
/// W[N, K]ᵀ with every activation row quantised once per call exactly as the decode path does
/// (<see cref="QuantizeActivations"/>: int8, one f32 scale per group of 32, and −8 · Σ q), and every (row, column,
/// group) an exact integer dot product (AvxVnni <c>vpdpbusd</c>). The weights are packed per call, block by block of
/// <see cref="IntColumnBlock"/> columns, into panels of 16 columns: per group of 32 and quad of 4 k, 64 bytes (columns
/// 0–7 then 8–15, 4 bytes each), so one 256-bit <c>vpdpbusd</c> takes 8 columns × 4 k against 4 activation bytes
/// broadcast. The weights are the unsigned operand: q4 nibbles as stored (0..15), int8 codes + 128 (0..255); the
/// activations the signed one, and each group's integer sum starts at −8 · Σ q (q4) or −128 · Σ q (int8), which
/// cancels the offset exactly. Each group's sum is converted and multiply-added, in group order, as
/// fma(dot, w_scale · x_scale, acc): the operations and order of the decode path's scalar kernel
/// (<c>DotIntegerScalar</c>), so every element equals what that kernel gives for its row, whatever M, the tile or the
/// thread count (each element is owned by one task and summed over all of K in order).
/// Needs AvxVnni: <c>vpmaddubsw</c> would saturate on int8's unsigned operand (2 · 255 · 127 &gt; 32767).
/// </summary>
internal static unsafe partial class Gemm
{
    /// <summary>Columns per packed weight panel (two 256-bit vectors of 8).</summary>
    private const int IntPanel = 16;
    /// <summary>Activation rows per microkernel call.</summary>
    private const int IntRows = 4;
    /// <summary>Weight rows packed per block: 1024 × K bytes (+ scales) stays in L3 while every row block streams it.</summary>
    public const int IntColumnBlock = 1024;
    private const int IntSlicesPerTask = 12;
    private const int IntPanelsPerTask = 16;
    private const int IntPanelsPerPackTask = 4;

    /// <summary>Whether <see cref="Run"/> takes the integer GEMM for a product of m &gt; <see cref="MatVecMaxRows"/> rows.</summary>
    public static bool UsesIntegerGemm(KernelIsa isa, bool vnni, WeightView w)
        => vnni && isa != KernelIsa.Scalar && SupportsIntegerDot(w);

    /// <summary>Bytes of the shared buffer of an integer GEMM: quantised activations, then one packed weight block.</summary>
    public static long IntegerGemmBytes(int m, int n, int k)
    {
        int columns = (Math.Min(n, IntColumnBlock) + IntPanel - 1) / IntPanel * IntPanel;
        long activations = (QuantizedActivationBytes(m, k) + 63) & ~63L;
        long weights = ((long)columns * k + 63) & ~63L;
        return activations + weights + (long)columns * (k / WeightQuantizerGroup) * 4 + 64;
    }

    private static void RunIntegerGemm(WorkerPool pool, KernelIsa isa, float* x, int m, int k, WeightView w, float* bias, float* y, byte* shared)
    {
        int n = w.Rows, groups = k / WeightQuantizerGroup;
        var quantized = QuantizeActivations(isa, x, m, k, shared);
        int blockColumns = (Math.Min(n, IntColumnBlock) + IntPanel - 1) / IntPanel * IntPanel;
        byte* packed = shared + ((QuantizedActivationBytes(m, k) + 63) & ~63L);
        float* scales = (float*)(packed + (((long)blockColumns * k + 63) & ~63L));
        int slices = (m + IntRows - 1) / IntRows;
        int rowTasks = (slices + IntSlicesPerTask - 1) / IntSlicesPerTask;
        for (int jc = 0; jc < n; jc += IntColumnBlock)
        {
            int nc = Math.Min(IntColumnBlock, n - jc);
            int panels = (nc + IntPanel - 1) / IntPanel;
            var pack = new IntPackJob { W = w, Jc = jc, Nc = nc, K = k, Packed = packed, Scales = scales };
            pool.Run((panels + IntPanelsPerPackTask - 1) / IntPanelsPerPackTask, ref pack);
            int panelTasks = (panels + IntPanelsPerTask - 1) / IntPanelsPerTask;
            var compute = new IntComputeJob
            {
                X = quantized, M = m, K = k, N = n, Groups = groups, Jc = jc, Nc = nc, PanelTasks = panelTasks,
                Packed = packed, Scales = scales, Bias = bias, Y = y, OffsetFactor = w.DType == Tensors.DType.Q4 ? 1 : 16,
            };
            pool.Run(rowTasks * panelTasks, ref compute);
        }
    }

    /// <summary>Packs a few 16-column panels of the block: unsigned codes in quad-interleaved order, f32 scales.</summary>
    private struct IntPackJob : IParallelJob
    {
        public WeightView W;
        public int Jc, Nc, K;
        public byte* Packed;
        public float* Scales;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            int groups = K / WeightQuantizerGroup;
            bool q4 = W.DType == Tensors.DType.Q4;
            // q4: each column's group unpacked to 32 bytes (column order) first; a column past the block reads zeros.
            byte* unpacked = stackalloc byte[IntPanel * 32 + 32];
            byte* zeros = unpacked + IntPanel * 32;
            new Span<byte>(zeros, 32).Clear();
            var sources = stackalloc float*[8];
            int firstPanel = index * IntPanelsPerPackTask;
            int lastPanel = Math.Min(firstPanel + IntPanelsPerPackTask, (Nc + IntPanel - 1) / IntPanel);
            for (int p = firstPanel; p < lastPanel; p++)
            {
                byte* panel = Packed + (long)p * IntPanel * K;
                float* panelScales = Scales + (long)p * groups * IntPanel;
                int columns = Math.Min(IntPanel, Nc - p * IntPanel);
                for (int j = 0; j < IntPanel; j++)
                {
                    if (j >= columns)
                    {
                        for (int g = 0; g < groups; g++) panelScales[g * IntPanel + j] = 0;
                        continue;
                    }
                    var rowScales = W.RowScales(Jc + p * IntPanel + j);
                    for (int g = 0; g < groups; g++) panelScales[g * IntPanel + j] = rowScales[g];
                }
                for (int g = 0; g < groups; g++)
                {
                    byte* target = panel + g * 512;
                    // 8 columns × 8 dwords (quads of k) transposed to 8 quads × 8 columns, twice: the float transpose
                    // moves the 4-byte quads unchanged.
                    for (int half = 0; half < 2; half++)
                    {
                        for (int c = 0; c < 8; c++)
                        {
                            int j = half * 8 + c;
                            if (j >= columns) sources[c] = (float*)zeros;
                            else if (q4)
                            {
                                var bytes = Vector128.Load(W.Data + (long)(Jc + p * IntPanel + j) * K / 2 + g * 16);
                                byte* u = unpacked + j * 32;
                                (bytes & Vector128.Create((byte)0x0F)).Store(u);
                                Vector128.ShiftRightLogical(bytes, 4).Store(u + 16);
                                sources[c] = (float*)u;
                            }
                            else sources[c] = (float*)(W.Data + (long)(Jc + p * IntPanel + j) * K + g * 32);
                        }
                        Transpose8x8(sources, 0, (float*)(target + half * 32), IntPanel);
                    }
                    if (!q4)
                        for (int v = 0; v < 512; v += 32) (Vector256.Load(target + v) ^ Vector256.Create((byte)0x80)).Store(target + v);
                }
            }
        }
    }

    /// <summary>A few 4-row slices of the quantised activations times a few panels of the packed block.</summary>
    private struct IntComputeJob : IParallelJob
    {
        public QuantizedActivations X;
        public int M, K, N, Groups, Jc, Nc, PanelTasks, OffsetFactor;
        public byte* Packed;
        public float* Scales, Bias, Y;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            int rowTask = index / PanelTasks, panelTask = index % PanelTasks;
            int firstRow = rowTask * IntSlicesPerTask * IntRows, endRow = Math.Min(M, firstRow + IntSlicesPerTask * IntRows);
            int firstPanel = panelTask * IntPanelsPerTask;
            int endPanel = Math.Min(firstPanel + IntPanelsPerTask, (Nc + IntPanel - 1) / IntPanel);
            float* tile = stackalloc float[IntRows * IntPanel];
            var rows = stackalloc int[IntRows];
            for (int p = firstPanel; p < endPanel; p++)
            {
                byte* panel = Packed + (long)p * IntPanel * K;
                float* panelScales = Scales + (long)p * Groups * IntPanel;
                int column = Jc + p * IntPanel, columns = Math.Min(IntPanel, Jc + Nc - column);
                for (int r0 = firstRow; r0 < endRow; r0 += IntRows)
                {
                    int count = Math.Min(IntRows, endRow - r0);
                    // Rows past the end repeat the last row; their results are not written.
                    for (int r = 0; r < IntRows; r++) rows[r] = r0 + Math.Min(r, count - 1);
                    MicroInteger(X, rows, Groups, panel, panelScales, OffsetFactor, tile);
                    for (int r = 0; r < count; r++)
                    {
                        float* t = tile + r * IntPanel, target = Y + (long)(r0 + r) * N + column;
                        if (columns == IntPanel)
                        {
                            var b0 = Bias == null ? Vector256<float>.Zero : Vector256.Load(Bias + column);
                            var b1 = Bias == null ? Vector256<float>.Zero : Vector256.Load(Bias + column + 8);
                            (Vector256.Load(t) + b0).Store(target);
                            (Vector256.Load(t + 8) + b1).Store(target + 8);
                        }
                        else
                            for (int j = 0; j < columns; j++) target[j] = t[j] + (Bias == null ? 0 : Bias[column + j]);
                    }
                }
            }
        }
    }

    /// <summary>4 activation rows × 16 columns over every group: int32 sums per group (started at the offset
    /// correction), then acc = fma(f32(sum), w_scale · x_scale, acc) per group in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroInteger(QuantizedActivations x, int* rows, int groups, byte* panel, float* panelScales, int offsetFactor, float* tile)
    {
        sbyte* x0 = x.Row(rows[0]), x1 = x.Row(rows[1]), x2 = x.Row(rows[2]), x3 = x.Row(rows[3]);
        float* s0 = x.RowScales(rows[0]), s1 = x.RowScales(rows[1]), s2 = x.RowScales(rows[2]), s3 = x.RowScales(rows[3]);
        int* o0 = x.RowOffsets(rows[0]), o1 = x.RowOffsets(rows[1]), o2 = x.RowOffsets(rows[2]), o3 = x.RowOffsets(rows[3]);
        Vector256<float> f00 = default, f01 = default, f10 = default, f11 = default;
        Vector256<float> f20 = default, f21 = default, f30 = default, f31 = default;
        for (int g = 0; g < groups; g++, panel += 512, x0 += 32, x1 += 32, x2 += 32, x3 += 32)
        {
            var i00 = Vector256.Create(o0[g] * offsetFactor); var i01 = i00;
            var i10 = Vector256.Create(o1[g] * offsetFactor); var i11 = i10;
            var i20 = Vector256.Create(o2[g] * offsetFactor); var i21 = i20;
            var i30 = Vector256.Create(o3[g] * offsetFactor); var i31 = i30;
            Sse.Prefetch0(panel + 1024);
            for (int q = 0; q < 8; q++)
            {
                var w0 = Vector256.Load(panel + q * 64);
                var w1 = Vector256.Load(panel + q * 64 + 32);
                var a = Vector256.Create(((int*)x0)[q]).AsSByte();
                i00 = AvxVnni.MultiplyWideningAndAdd(i00, w0, a);
                i01 = AvxVnni.MultiplyWideningAndAdd(i01, w1, a);
                a = Vector256.Create(((int*)x1)[q]).AsSByte();
                i10 = AvxVnni.MultiplyWideningAndAdd(i10, w0, a);
                i11 = AvxVnni.MultiplyWideningAndAdd(i11, w1, a);
                a = Vector256.Create(((int*)x2)[q]).AsSByte();
                i20 = AvxVnni.MultiplyWideningAndAdd(i20, w0, a);
                i21 = AvxVnni.MultiplyWideningAndAdd(i21, w1, a);
                a = Vector256.Create(((int*)x3)[q]).AsSByte();
                i30 = AvxVnni.MultiplyWideningAndAdd(i30, w0, a);
                i31 = AvxVnni.MultiplyWideningAndAdd(i31, w1, a);
            }
            var ws0 = Vector256.Load(panelScales + g * IntPanel);
            var ws1 = Vector256.Load(panelScales + g * IntPanel + 8);
            var xs = Vector256.Create(s0[g]);
            f00 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i00), ws0 * xs, f00);
            f01 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i01), ws1 * xs, f01);
            xs = Vector256.Create(s1[g]);
            f10 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i10), ws0 * xs, f10);
            f11 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i11), ws1 * xs, f11);
            xs = Vector256.Create(s2[g]);
            f20 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i20), ws0 * xs, f20);
            f21 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i21), ws1 * xs, f21);
            xs = Vector256.Create(s3[g]);
            f30 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i30), ws0 * xs, f30);
            f31 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i31), ws1 * xs, f31);
        }
        f00.Store(tile); f01.Store(tile + 8);
        f10.Store(tile + 16); f11.Store(tile + 24);
        f20.Store(tile + 32); f21.Store(tile + 40);
        f30.Store(tile + 48); f31.Store(tile + 56);
    }
}
