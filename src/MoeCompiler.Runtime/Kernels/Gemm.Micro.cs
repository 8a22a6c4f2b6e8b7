using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Runtime.Kernels;

// The register-tile inner kernels of Gemm. Written out by hand-unrolled code (one accumulator per register) because
// the JIT keeps named Vector locals in registers but not arrays of them.
internal static unsafe partial class Gemm
{
    /// <summary>12×32 tile: acc[r, j] = Σ_k a[k·12 + r] · b[k·32 + j], in k order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroAvx512(int kc, float* a, float* b, float* tile)
    {
        var c0_0 = Vector512<float>.Zero; var c0_1 = Vector512<float>.Zero;
        var c1_0 = Vector512<float>.Zero; var c1_1 = Vector512<float>.Zero;
        var c2_0 = Vector512<float>.Zero; var c2_1 = Vector512<float>.Zero;
        var c3_0 = Vector512<float>.Zero; var c3_1 = Vector512<float>.Zero;
        var c4_0 = Vector512<float>.Zero; var c4_1 = Vector512<float>.Zero;
        var c5_0 = Vector512<float>.Zero; var c5_1 = Vector512<float>.Zero;
        var c6_0 = Vector512<float>.Zero; var c6_1 = Vector512<float>.Zero;
        var c7_0 = Vector512<float>.Zero; var c7_1 = Vector512<float>.Zero;
        var c8_0 = Vector512<float>.Zero; var c8_1 = Vector512<float>.Zero;
        var c9_0 = Vector512<float>.Zero; var c9_1 = Vector512<float>.Zero;
        var c10_0 = Vector512<float>.Zero; var c10_1 = Vector512<float>.Zero;
        var c11_0 = Vector512<float>.Zero; var c11_1 = Vector512<float>.Zero;
        for (int k = 0; k < kc; k++)
        {
            var b0 = Vector512.Load(b + 0);
            var b1 = Vector512.Load(b + 16);
            var a0 = Vector512.Create(a[0]);
            c0_0 = Avx512F.FusedMultiplyAdd(a0, b0, c0_0);
            c0_1 = Avx512F.FusedMultiplyAdd(a0, b1, c0_1);
            var a1 = Vector512.Create(a[1]);
            c1_0 = Avx512F.FusedMultiplyAdd(a1, b0, c1_0);
            c1_1 = Avx512F.FusedMultiplyAdd(a1, b1, c1_1);
            var a2 = Vector512.Create(a[2]);
            c2_0 = Avx512F.FusedMultiplyAdd(a2, b0, c2_0);
            c2_1 = Avx512F.FusedMultiplyAdd(a2, b1, c2_1);
            var a3 = Vector512.Create(a[3]);
            c3_0 = Avx512F.FusedMultiplyAdd(a3, b0, c3_0);
            c3_1 = Avx512F.FusedMultiplyAdd(a3, b1, c3_1);
            var a4 = Vector512.Create(a[4]);
            c4_0 = Avx512F.FusedMultiplyAdd(a4, b0, c4_0);
            c4_1 = Avx512F.FusedMultiplyAdd(a4, b1, c4_1);
            var a5 = Vector512.Create(a[5]);
            c5_0 = Avx512F.FusedMultiplyAdd(a5, b0, c5_0);
            c5_1 = Avx512F.FusedMultiplyAdd(a5, b1, c5_1);
            var a6 = Vector512.Create(a[6]);
            c6_0 = Avx512F.FusedMultiplyAdd(a6, b0, c6_0);
            c6_1 = Avx512F.FusedMultiplyAdd(a6, b1, c6_1);
            var a7 = Vector512.Create(a[7]);
            c7_0 = Avx512F.FusedMultiplyAdd(a7, b0, c7_0);
            c7_1 = Avx512F.FusedMultiplyAdd(a7, b1, c7_1);
            var a8 = Vector512.Create(a[8]);
            c8_0 = Avx512F.FusedMultiplyAdd(a8, b0, c8_0);
            c8_1 = Avx512F.FusedMultiplyAdd(a8, b1, c8_1);
            var a9 = Vector512.Create(a[9]);
            c9_0 = Avx512F.FusedMultiplyAdd(a9, b0, c9_0);
            c9_1 = Avx512F.FusedMultiplyAdd(a9, b1, c9_1);
            var a10 = Vector512.Create(a[10]);
            c10_0 = Avx512F.FusedMultiplyAdd(a10, b0, c10_0);
            c10_1 = Avx512F.FusedMultiplyAdd(a10, b1, c10_1);
            var a11 = Vector512.Create(a[11]);
            c11_0 = Avx512F.FusedMultiplyAdd(a11, b0, c11_0);
            c11_1 = Avx512F.FusedMultiplyAdd(a11, b1, c11_1);
            a += 12;
            b += 32;
        }
        c0_0.Store(tile + 0);
        c0_1.Store(tile + 16);
        c1_0.Store(tile + 32);
        c1_1.Store(tile + 48);
        c2_0.Store(tile + 64);
        c2_1.Store(tile + 80);
        c3_0.Store(tile + 96);
        c3_1.Store(tile + 112);
        c4_0.Store(tile + 128);
        c4_1.Store(tile + 144);
        c5_0.Store(tile + 160);
        c5_1.Store(tile + 176);
        c6_0.Store(tile + 192);
        c6_1.Store(tile + 208);
        c7_0.Store(tile + 224);
        c7_1.Store(tile + 240);
        c8_0.Store(tile + 256);
        c8_1.Store(tile + 272);
        c9_0.Store(tile + 288);
        c9_1.Store(tile + 304);
        c10_0.Store(tile + 320);
        c10_1.Store(tile + 336);
        c11_0.Store(tile + 352);
        c11_1.Store(tile + 368);
    }

    /// <summary>6×16 tile: acc[r, j] = Σ_k a[k·6 + r] · b[k·16 + j], in k order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroAvx2(int kc, float* a, float* b, float* tile)
    {
        var c0_0 = Vector256<float>.Zero; var c0_1 = Vector256<float>.Zero;
        var c1_0 = Vector256<float>.Zero; var c1_1 = Vector256<float>.Zero;
        var c2_0 = Vector256<float>.Zero; var c2_1 = Vector256<float>.Zero;
        var c3_0 = Vector256<float>.Zero; var c3_1 = Vector256<float>.Zero;
        var c4_0 = Vector256<float>.Zero; var c4_1 = Vector256<float>.Zero;
        var c5_0 = Vector256<float>.Zero; var c5_1 = Vector256<float>.Zero;
        for (int k = 0; k < kc; k++)
        {
            var b0 = Vector256.Load(b + 0);
            var b1 = Vector256.Load(b + 8);
            var a0 = Vector256.Create(a[0]);
            c0_0 = Fma.MultiplyAdd(a0, b0, c0_0);
            c0_1 = Fma.MultiplyAdd(a0, b1, c0_1);
            var a1 = Vector256.Create(a[1]);
            c1_0 = Fma.MultiplyAdd(a1, b0, c1_0);
            c1_1 = Fma.MultiplyAdd(a1, b1, c1_1);
            var a2 = Vector256.Create(a[2]);
            c2_0 = Fma.MultiplyAdd(a2, b0, c2_0);
            c2_1 = Fma.MultiplyAdd(a2, b1, c2_1);
            var a3 = Vector256.Create(a[3]);
            c3_0 = Fma.MultiplyAdd(a3, b0, c3_0);
            c3_1 = Fma.MultiplyAdd(a3, b1, c3_1);
            var a4 = Vector256.Create(a[4]);
            c4_0 = Fma.MultiplyAdd(a4, b0, c4_0);
            c4_1 = Fma.MultiplyAdd(a4, b1, c4_1);
            var a5 = Vector256.Create(a[5]);
            c5_0 = Fma.MultiplyAdd(a5, b0, c5_0);
            c5_1 = Fma.MultiplyAdd(a5, b1, c5_1);
            a += 6;
            b += 16;
        }
        c0_0.Store(tile + 0);
        c0_1.Store(tile + 8);
        c1_0.Store(tile + 16);
        c1_1.Store(tile + 24);
        c2_0.Store(tile + 32);
        c2_1.Store(tile + 40);
        c3_0.Store(tile + 48);
        c3_1.Store(tile + 56);
        c4_0.Store(tile + 64);
        c4_1.Store(tile + 72);
        c5_0.Store(tile + 80);
        c5_1.Store(tile + 88);
    }
}
