using MoeCompiler.Runtime.Kernels;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Benchmarks;

/// <summary>
/// The register-tiling question for batched decode (docs/performance.md, "Batched decode"): does a loop over two
/// weight rows × two activation rows (each activation load feeding two multiply-adds, 16 accumulators), run twice
/// for four activation rows, beat <c>PackedBF16.AccumulateRows</c>'s one weight row × four activation rows (16
/// accumulators, every weight block unpacked once)? Four activation rows × two weight rows would need 32 accumulators,
/// all the vector registers. Synthetic packed-bf16 blocks (random codes and low bytes, unpacked by
/// <c>PackedBF16.UnpackBlock</c>), width 2048, activations in L1, weights either L2-resident (16 rows) or streamed
/// (65,536 rows, 192 MB); every loop prefetches two weight rows ahead like the product kernel. Prints ns per
/// 64-weight block of one weight row, for all activation rows together (best of rounds, variants alternating).
/// </summary>
internal static unsafe class RowTilingBenchmarks
{
    private const int K = 2048, Blocks = K / 64;

    public static void Run(BenchOptions options)
    {
        if (!Avx512BW.IsSupported)
        {
            Console.WriteLine("rows-tiling needs AVX-512 BW");
            return;
        }
        var x = (float*)NativeMemory.AlignedAlloc(4 * K * 4, 64);
        var random = new Random(1);
        for (int i = 0; i < 4 * K; i++) x[i] = (float)random.NextDouble();
        byte* tableBytes = stackalloc byte[16];
        for (int i = 0; i < 16; i++) tableBytes[i] = (byte)(0x3A + i % 6);
        var t = Vector128.Load(tableBytes);
        var table = Vector512.Create(Vector256.Create(t, t), Vector256.Create(t, t));
        var accumulators = stackalloc Vector512<float>[16];
        string[] names = ["1 row", "4 rows, 1 weight row × 4", "4 rows, 2 weight rows × 2, twice"];
        foreach (int rows in new[] { 16, 65536 })
        {
            long codeBytes = (long)rows * Blocks * 32, lowBytes = (long)rows * Blocks * 64;
            var codes = (byte*)NativeMemory.AlignedAlloc((nuint)codeBytes, 64);
            var low = (byte*)NativeMemory.AlignedAlloc((nuint)lowBytes, 64);
            random.NextBytes(new Span<byte>(codes, (int)codeBytes));
            random.NextBytes(new Span<byte>(low, (int)lowBytes));
            int passes = rows == 16 ? 4000 : 1;
            var best = new double[names.Length];
            Array.Fill(best, double.MaxValue);
            for (int round = 0; round <= options.Repetitions + 4; round++)
                for (int v = 0; v < names.Length; v++)
                {
                    double start = Timing.Now();
                    for (int p = 0; p < passes; p++)
                        for (int r = 0; r < rows; r += 2)
                        {
                            byte* c = codes + (long)r * Blocks * 32;
                            byte* l = low + (long)r * Blocks * 64;
                            switch (v)
                            {
                                case 0: One(table, c, l, x, accumulators); One(table, c + Blocks * 32, l + Blocks * 64, x, accumulators); break;
                                case 1: Four(table, c, l, x, accumulators); Four(table, c + Blocks * 32, l + Blocks * 64, x, accumulators); break;
                                default: TwoByTwo(table, c, l, x, accumulators); TwoByTwo(table, c, l, x + 2 * K, accumulators); break;
                            }
                        }
                    if (round > 0) best[v] = Math.Min(best[v], (Timing.Now() - start) * 1e9 / ((double)passes * rows * Blocks));
                }
            Console.WriteLine($"weights {(rows == 16 ? "L2-resident (16 rows)" : "streamed (65,536 rows, 192 MB)")}:");
            for (int v = 0; v < names.Length; v++) Console.WriteLine($"  {names[v],-34} {best[v],6:F2} ns per block  ({best[v] / best[0]:F2}× 1 row)");
            NativeMemory.AlignedFree(codes);
            NativeMemory.AlignedFree(low);
        }
        NativeMemory.AlignedFree(x);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void One(Vector512<byte> table, byte* codes, byte* low, float* x, Vector512<float>* acc)
    {
        var shifts = PackedBF16.CodeShifts;
        long lowAhead = 2L * Blocks * 64, codesAhead = 2L * Blocks * 32;
        Vector512<float> a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
        for (int b = 0, i = 0; b < Blocks; b++, i += 64, codes += 32, low += 64)
        {
            Sse.Prefetch0(low + lowAhead);
            Sse.Prefetch0(codes + codesAhead);
            PackedBF16.UnpackBlock(table, shifts, codes, low, out var w0, out var w1, out var w2, out var w3);
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), w0, a0);
            a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 16), w1, a1);
            a2 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 32), w2, a2);
            a3 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 48), w3, a3);
        }
        acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Four(Vector512<byte> table, byte* codes, byte* low, float* x, Vector512<float>* acc)
    {
        var shifts = PackedBF16.CodeShifts;
        long lowAhead = 2L * Blocks * 64, codesAhead = 2L * Blocks * 32;
        float* x0 = x, x1 = x + K, x2 = x + 2 * K, x3 = x + 3 * K;
        Vector512<float> a00 = acc[0], a01 = acc[1], a02 = acc[2], a03 = acc[3], a10 = acc[4], a11 = acc[5], a12 = acc[6], a13 = acc[7];
        Vector512<float> a20 = acc[8], a21 = acc[9], a22 = acc[10], a23 = acc[11], a30 = acc[12], a31 = acc[13], a32 = acc[14], a33 = acc[15];
        for (int b = 0, i = 0; b < Blocks; b++, i += 64, codes += 32, low += 64)
        {
            Sse.Prefetch0(low + lowAhead);
            Sse.Prefetch0(codes + codesAhead);
            PackedBF16.UnpackBlock(table, shifts, codes, low, out var w0, out var w1, out var w2, out var w3);
            a00 = Avx512F.FusedMultiplyAdd(Vector512.Load(x0 + i), w0, a00);
            a01 = Avx512F.FusedMultiplyAdd(Vector512.Load(x0 + i + 16), w1, a01);
            a02 = Avx512F.FusedMultiplyAdd(Vector512.Load(x0 + i + 32), w2, a02);
            a03 = Avx512F.FusedMultiplyAdd(Vector512.Load(x0 + i + 48), w3, a03);
            a10 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + i), w0, a10);
            a11 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + i + 16), w1, a11);
            a12 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + i + 32), w2, a12);
            a13 = Avx512F.FusedMultiplyAdd(Vector512.Load(x1 + i + 48), w3, a13);
            a20 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + i), w0, a20);
            a21 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + i + 16), w1, a21);
            a22 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + i + 32), w2, a22);
            a23 = Avx512F.FusedMultiplyAdd(Vector512.Load(x2 + i + 48), w3, a23);
            a30 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + i), w0, a30);
            a31 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + i + 16), w1, a31);
            a32 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + i + 32), w2, a32);
            a33 = Avx512F.FusedMultiplyAdd(Vector512.Load(x3 + i + 48), w3, a33);
        }
        acc[0] = a00; acc[1] = a01; acc[2] = a02; acc[3] = a03; acc[4] = a10; acc[5] = a11; acc[6] = a12; acc[7] = a13;
        acc[8] = a20; acc[9] = a21; acc[10] = a22; acc[11] = a23; acc[12] = a30; acc[13] = a31; acc[14] = a32; acc[15] = a33;
    }

    /// <summary>Two consecutive weight rows × two activation rows: each activation vector is loaded once for two
    /// multiply-adds, each weight row unpacked once per call (so twice for four activation rows).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void TwoByTwo(Vector512<byte> table, byte* codes, byte* low, float* x, Vector512<float>* acc)
    {
        var shifts = PackedBF16.CodeShifts;
        const long codeRow = Blocks * 32, lowRow = Blocks * 64;
        float* x0 = x, x1 = x + K;
        Vector512<float> a00 = acc[0], a01 = acc[1], a02 = acc[2], a03 = acc[3], a10 = acc[4], a11 = acc[5], a12 = acc[6], a13 = acc[7];
        Vector512<float> b00 = acc[8], b01 = acc[9], b02 = acc[10], b03 = acc[11], b10 = acc[12], b11 = acc[13], b12 = acc[14], b13 = acc[15];
        for (int b = 0, i = 0; b < Blocks; b++, i += 64, codes += 32, low += 64)
        {
            Sse.Prefetch0(low + 2 * lowRow);
            Sse.Prefetch0(codes + 2 * codeRow);
            Sse.Prefetch0(low + 3 * lowRow);
            Sse.Prefetch0(codes + 3 * codeRow);
            PackedBF16.UnpackBlock(table, shifts, codes, low, out var w0, out var w1, out var w2, out var w3);
            PackedBF16.UnpackBlock(table, shifts, codes + codeRow, low + lowRow, out var v0, out var v1, out var v2, out var v3);
            var x00 = Vector512.Load(x0 + i);
            var x10 = Vector512.Load(x1 + i);
            a00 = Avx512F.FusedMultiplyAdd(x00, w0, a00); a10 = Avx512F.FusedMultiplyAdd(x10, w0, a10);
            b00 = Avx512F.FusedMultiplyAdd(x00, v0, b00); b10 = Avx512F.FusedMultiplyAdd(x10, v0, b10);
            var x01 = Vector512.Load(x0 + i + 16);
            var x11 = Vector512.Load(x1 + i + 16);
            a01 = Avx512F.FusedMultiplyAdd(x01, w1, a01); a11 = Avx512F.FusedMultiplyAdd(x11, w1, a11);
            b01 = Avx512F.FusedMultiplyAdd(x01, v1, b01); b11 = Avx512F.FusedMultiplyAdd(x11, v1, b11);
            var x02 = Vector512.Load(x0 + i + 32);
            var x12 = Vector512.Load(x1 + i + 32);
            a02 = Avx512F.FusedMultiplyAdd(x02, w2, a02); a12 = Avx512F.FusedMultiplyAdd(x12, w2, a12);
            b02 = Avx512F.FusedMultiplyAdd(x02, v2, b02); b12 = Avx512F.FusedMultiplyAdd(x12, v2, b12);
            var x03 = Vector512.Load(x0 + i + 48);
            var x13 = Vector512.Load(x1 + i + 48);
            a03 = Avx512F.FusedMultiplyAdd(x03, w3, a03); a13 = Avx512F.FusedMultiplyAdd(x13, w3, a13);
            b03 = Avx512F.FusedMultiplyAdd(x03, v3, b03); b13 = Avx512F.FusedMultiplyAdd(x13, v3, b13);
        }
        acc[0] = a00; acc[1] = a01; acc[2] = a02; acc[3] = a03; acc[4] = a10; acc[5] = a11; acc[6] = a12; acc[7] = a13;
        acc[8] = b00; acc[9] = b01; acc[10] = b02; acc[11] = b03; acc[12] = b10; acc[13] = b11; acc[14] = b12; acc[15] = b13;
    }
}
