using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Runtime.Kernels;

// Decode dot products over the grouped formats of docs/quantization.md: each group's 32 products are summed in a
// vector, then scaled and added to the row's accumulator, so a group costs one extra FMA and no horizontal sum.
internal static unsafe partial class Gemm
{
    private const int WeightQuantizerGroup = 32;

    /// <summary>Σ_g scale_g · Σ_{c in g} x[c]·q[c] for an int8 row with groups of 32 (AVX2 or AVX-512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotI8Groups32(KernelIsa isa, float* x, sbyte* q, int groups, RowScales scales)
    {
        if (isa == KernelIsa.Avx512)
        {
            Vector512<float> a0 = default, a1 = default;
            int g = 0;
            for (; g + 2 <= groups; g += 2, x += 64, q += 64)
            {
                Sse.Prefetch0(q + 2048);
                var t0 = Vector512.Load(x) * WidenI8(Vector128.Load(q));
                var t1 = Vector512.Load(x + 32) * WidenI8(Vector128.Load(q + 32));
                t0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + 16), WidenI8(Vector128.Load(q + 16)), t0);
                t1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + 48), WidenI8(Vector128.Load(q + 48)), t1);
                a0 = Avx512F.FusedMultiplyAdd(t0, Vector512.Create(scales[g]), a0);
                a1 = Avx512F.FusedMultiplyAdd(t1, Vector512.Create(scales[g + 1]), a1);
            }
            if (g < groups)
            {
                var t0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + 16), WidenI8(Vector128.Load(q + 16)), Vector512.Load(x) * WidenI8(Vector128.Load(q)));
                a0 = Avx512F.FusedMultiplyAdd(t0, Vector512.Create(scales[g]), a0);
            }
            return Vector512.Sum(a0 + a1);
        }
        else
        {
            Vector256<float> a0 = default, a1 = default;
            for (int g = 0; g < groups; g++, x += 32, q += 32)
            {
                var t0 = Vector256.Load(x) * WidenI8Avx2(q);
                var t1 = Vector256.Load(x + 8) * WidenI8Avx2(q + 8);
                t0 = Fma.MultiplyAdd(Vector256.Load(x + 16), WidenI8Avx2(q + 16), t0);
                t1 = Fma.MultiplyAdd(Vector256.Load(x + 24), WidenI8Avx2(q + 24), t1);
                var scale = Vector256.Create(scales[g]);
                a0 = Fma.MultiplyAdd(t0, scale, a0);
                a1 = Fma.MultiplyAdd(t1, scale, a1);
            }
            return Vector256.Sum(a0 + a1);
        }
    }

    /// <summary>Σ_g scale_g · Σ_{c in g} x[c]·(q[c] − 8) for one q4 row (see <see cref="Widen.Q4ToF32"/> for the layout).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotQ4(KernelIsa isa, float* x, byte* packed, RowScales scales)
    {
        int groups = scales.Groups;
        if (isa == KernelIsa.Avx512)
        {
            Vector512<float> a0 = default, a1 = default;
            int g = 0;
            for (; g + 2 <= groups; g += 2, x += 64, packed += 32)
            {
                Sse.Prefetch0(packed + 1024);
                Widen.Q4Nibbles(packed, out var l0, out var h0);
                Widen.Q4Nibbles(packed + 16, out var l1, out var h1);
                var t0 = Vector512.Load(x) * Widen.Q4Values512(l0);
                var t1 = Vector512.Load(x + 32) * Widen.Q4Values512(l1);
                t0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + 16), Widen.Q4Values512(h0), t0);
                t1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + 48), Widen.Q4Values512(h1), t1);
                a0 = Avx512F.FusedMultiplyAdd(t0, Vector512.Create(scales[g]), a0);
                a1 = Avx512F.FusedMultiplyAdd(t1, Vector512.Create(scales[g + 1]), a1);
            }
            if (g < groups)
            {
                Widen.Q4Nibbles(packed, out var l0, out var h0);
                var t0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + 16), Widen.Q4Values512(h0), Vector512.Load(x) * Widen.Q4Values512(l0));
                a0 = Avx512F.FusedMultiplyAdd(t0, Vector512.Create(scales[g]), a0);
            }
            return Vector512.Sum(a0 + a1);
        }
        if (isa == KernelIsa.Avx2)
        {
            Vector256<float> a0 = default, a1 = default;
            var offset = Vector128.Create((sbyte)8);
            for (int g = 0; g < groups; g++, x += 32, packed += 16)
            {
                Widen.Q4Nibbles(packed, out var low, out var high);
                var l = low.AsSByte() - offset;
                var h = high.AsSByte() - offset;
                var t0 = Vector256.Load(x) * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(l));
                var t1 = Vector256.Load(x + 8) * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(l, 8)));
                t0 = Fma.MultiplyAdd(Vector256.Load(x + 16), Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(h)), t0);
                t1 = Fma.MultiplyAdd(Vector256.Load(x + 24), Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(h, 8))), t1);
                var scale = Vector256.Create(scales[g]);
                a0 = Fma.MultiplyAdd(t0, scale, a0);
                a1 = Fma.MultiplyAdd(t1, scale, a1);
            }
            return Vector256.Sum(a0 + a1);
        }
        float sum = 0;
        for (int g = 0; g < groups; g++, x += 32, packed += 16)
        {
            float group = 0;
            for (int j = 0; j < 16; j++)
            {
                group = MathF.FusedMultiplyAdd(x[j], (packed[j] & 0x0F) - 8, group);
                group = MathF.FusedMultiplyAdd(x[j + 16], (packed[j] >> 4) - 8, group);
            }
            sum = MathF.FusedMultiplyAdd(group, scales[g], sum);
        }
        return sum;
    }
}
