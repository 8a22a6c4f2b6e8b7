using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>
/// The integer decode path for grouped int8 and q4 weights (docs/quantization.md, "Kernels"), as llama.cpp runs
/// Q8_0/Q4_0 against Q8_0 activations: each activation row is quantised once per product to int8 with one f32 scale
/// per group of 32 (<see cref="QuantizeActivations"/>), then every weight row's group is an exact integer dot product
/// (AvxVnni <c>vpdpbusd</c>, or <c>vpmaddubsw</c> + <c>vpmaddwd</c> without it), converted to f32 and scaled by
/// <c>weight scale × activation scale</c> into a vector accumulator. Everything a row's result depends on is computed
/// by the task that owns the row, in a fixed order, so results do not depend on the thread count.
/// </summary>
internal static unsafe partial class Gemm
{
    /// <summary>An activation block quantised for <see cref="MatVecJob"/>: m rows of k int8 values, then per row and
    /// group of 32 the f32 scale and −8 × the sum of the group's int8 values (q4's offset correction).</summary>
    internal readonly struct QuantizedActivations(sbyte* values, float* scales, int* offsets, int k)
    {
        public readonly sbyte* Values = values;
        public readonly float* Scales = scales;
        public readonly int* Offsets = offsets;
        public readonly int K = k;

        public sbyte* Row(int i) => Values + (long)i * K;
        public float* RowScales(int i) => Scales + (long)i * (K / WeightQuantizerGroup);
        public int* RowOffsets(int i) => Offsets + (long)i * (K / WeightQuantizerGroup);
    }

    /// <summary>Whether <see cref="MatVecJob"/> can run <paramref name="w"/> with integer dot products: q4, or int8 with
    /// groups of 32 (the per-row int8 of older checkpoints keeps the f32-activation kernels).</summary>
    public static bool SupportsIntegerDot(WeightView w)
        => w.DType == Tensors.DType.Q4 || (w.DType == Tensors.DType.I8 && w.GroupSize == WeightQuantizerGroup && w.Columns % WeightQuantizerGroup == 0);

    /// <summary>Bytes of the buffer <see cref="QuantizeActivations"/> fills for m rows of k (k a multiple of 32), 64-aligned parts.</summary>
    public static long QuantizedActivationBytes(int m, int k)
    {
        long values = ((long)m * k + 63) & ~63L;
        long groups = (long)m * (k / WeightQuantizerGroup);
        return values + 2 * ((groups * 4 + 63) & ~63L);
    }

    /// <summary>Lays out and fills the quantised activations of x [m, k] in <paramref name="buffer"/>
    /// (<see cref="QuantizedActivationBytes"/> long).</summary>
    public static QuantizedActivations QuantizeActivations(KernelIsa isa, float* x, int m, int k, byte* buffer)
    {
        long values = ((long)m * k + 63) & ~63L;
        long groups = (long)m * (k / WeightQuantizerGroup);
        var q = new QuantizedActivations((sbyte*)buffer, (float*)(buffer + values), (int*)(buffer + values + ((groups * 4 + 63) & ~63L)), k);
        for (int i = 0; i < m; i++) QuantizeActivationRow(isa, x + (long)i * k, k, q.Row(i), q.RowScales(i), q.RowOffsets(i));
        return q;
    }

    /// <summary>
    /// One row, per group of 32: scale d = max|x| / 127 (0 for a group of zeros), q = round-half-even(x · (1/d)),
    /// clamped to [−127, 127], and −8 · Σ q (the q4 offset's share of the integer dot). Every path computes the same f32 products and roundings, so the bytes are
    /// identical on every instruction-set path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeActivationRow(KernelIsa isa, float* x, int k, sbyte* q, float* scales, int* offsets)
    {
        int groups = k / WeightQuantizerGroup;
        for (int g = 0; g < groups; g++, x += 32, q += 32)
        {
            if (isa != KernelIsa.Scalar)
            {
                var v0 = Vector256.Load(x);
                var v1 = Vector256.Load(x + 8);
                var v2 = Vector256.Load(x + 16);
                var v3 = Vector256.Load(x + 24);
                var max = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
                var half = Vector128.Max(max.GetLower(), max.GetUpper());
                half = Vector128.Max(half, Sse.Shuffle(half, half, 0b01_00_11_10));
                half = Vector128.Max(half, Sse.Shuffle(half, half, 0b10_11_00_01));
                float amax = half.ToScalar();
                float d = amax / 127f;
                float id = d != 0 ? 1f / d : 0f;
                if (!float.IsFinite(id)) (d, id) = (0f, 0f); // a group of subnormals: rounds to zeros
                scales[g] = d;
                var inverse = Vector256.Create(id);
                var limit = Vector256.Create(127);
                var i0 = Avx2.Min(Avx2.Max(Avx.ConvertToVector256Int32(v0 * inverse), -limit), limit);
                var i1 = Avx2.Min(Avx2.Max(Avx.ConvertToVector256Int32(v1 * inverse), -limit), limit);
                var i2 = Avx2.Min(Avx2.Max(Avx.ConvertToVector256Int32(v2 * inverse), -limit), limit);
                var i3 = Avx2.Min(Avx2.Max(Avx.ConvertToVector256Int32(v3 * inverse), -limit), limit);
                offsets[g] = -8 * Vector256.Sum((i0 + i1) + (i2 + i3));
                Vector256.Narrow(Vector256.Narrow(i0, i1), Vector256.Narrow(i2, i3)).Store(q);
            }
            else
            {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(x[j]));
                float d = amax / 127f;
                float id = d != 0 ? 1f / d : 0f;
                if (!float.IsFinite(id)) (d, id) = (0f, 0f); // a group of subnormals: rounds to zeros
                scales[g] = d;
                int sum = 0;
                for (int j = 0; j < 32; j++)
                {
                    int v = Math.Clamp((int)MathF.Round(x[j] * id, MidpointRounding.ToEven), -127, 127);
                    q[j] = (sbyte)v;
                    sum += v;
                }
                offsets[g] = -8 * sum;
            }
        }
    }

    /// <summary>The 8 partial int32 sums of Σ u[c]·s[c] over 32 bytes, added to <paramref name="addend"/> (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DotBytes(bool vnni, Vector256<int> addend, Vector256<byte> u, Vector256<sbyte> s)
    {
        if (vnni) return AvxVnni.MultiplyWideningAndAdd(addend, u, s);
        // u ≤ 255 only for int8's |−128|; pairs stay within int16 (2 · 128 · 127 < 32767): no saturation.
        return addend + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Vector256.Create((short)1));
    }

    /// <summary>Σ_g (w_g · x_g) · Σ_{c in g} q_w[c] · q_x[c] for one int8 weight row with groups of 32, against a
    /// quantised activation row. <paramref name="vnni"/> chooses <c>vpdpbusd</c> (AvxVnni) or the AVX2 pair.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotI8Integer(KernelIsa isa, bool vnni, sbyte* xq, float* xScales, sbyte* w, RowScales scales)
        => vnni ? DotInteger<No, Yes>(isa, xq, xScales, null, (byte*)w, scales) : DotInteger<No, No>(isa, xq, xScales, null, (byte*)w, scales);

    /// <summary>Σ_g (w_g · x_g) · Σ_{c in g} (n[c] − 8) · q_x[c] for one q4 row against a quantised activation row: the
    /// nibbles n are the unsigned operand as stored, and −8 · Σ q_x (precomputed per group) starts the integer sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotQ4Integer(KernelIsa isa, bool vnni, sbyte* xq, float* xScales, int* xOffsets, byte* packed, RowScales scales)
        => vnni ? DotInteger<Yes, Yes>(isa, xq, xScales, xOffsets, packed, scales) : DotInteger<Yes, No>(isa, xq, xScales, xOffsets, packed, scales);

    /// <summary>A compile-time flag: the JIT specialises <see cref="DotInteger{TQ4, TVnni}"/> per struct argument and
    /// folds the branches on it away.</summary>
    private interface IFlag { static abstract bool Value { get; } }
    private struct Yes : IFlag { public static bool Value => true; }
    private struct No : IFlag { public static bool Value => false; }

    /// <summary>
    /// Both formats. The vector paths take 8 groups at a time: their 8 scale products w_g · x_g are computed in one
    /// vector and stored, so each group broadcasts its own from L1; every group's 8 int32 partial sums are converted
    /// and multiply-added into 8-lane f32 accumulators, summed once at the end.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotInteger<TQ4, TVnni>(KernelIsa isa, sbyte* xq, float* xScales, int* xOffsets, byte* w, RowScales scales)
        where TQ4 : struct, IFlag where TVnni : struct, IFlag
    {
        bool q4 = TQ4.Value, vnni = TVnni.Value;
        int groups = scales.Groups;
        int stride = q4 ? 16 : 32;
        if (isa == KernelIsa.Scalar)
        {
            float sum = 0;
            for (int g = 0; g < groups; g++, xq += 32, w += stride)
            {
                int dot = 0;
                if (q4)
                {
                    dot = xOffsets[g];
                    for (int j = 0; j < 16; j++) dot += (w[j] & 0x0F) * xq[j] + (w[j] >> 4) * xq[j + 16];
                }
                else
                    for (int j = 0; j < 32; j++) dot += xq[j] * (sbyte)w[j];
                sum = MathF.FusedMultiplyAdd(dot, scales[g] * xScales[g], sum);
            }
            return sum;
        }
        float* products = stackalloc float[8];
        int g8 = 0;
        // Two accumulators on AVX2, four on AVX-512 (the same 256-bit code: with 512-bit accumulators the pairs of
        // group dots must be joined first, which measured no faster on Zen 4, whose 512-bit units are 256 bits wide).
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        bool four = isa == KernelIsa.Avx512;
        for (; g8 + 8 <= groups; g8 += 8, xq += 256, w += 8 * stride)
        {
            (Scales8(scales, g8) * Vector256.Load(xScales + g8)).Store(products);
            Sse.Prefetch0(w + 64 * stride);
            int* offsets = q4 ? xOffsets + g8 : null;
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq, offsets, 0, w)), Vector256.Create(products[0]), a0);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq + 32, offsets, 1, w + stride)), Vector256.Create(products[1]), a1);
            if (four)
            {
                a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq + 64, offsets, 2, w + 2 * stride)), Vector256.Create(products[2]), a2);
                a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq + 96, offsets, 3, w + 3 * stride)), Vector256.Create(products[3]), a3);
            }
            else
            {
                a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq + 64, offsets, 2, w + 2 * stride)), Vector256.Create(products[2]), a0);
                a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq + 96, offsets, 3, w + 3 * stride)), Vector256.Create(products[3]), a1);
            }
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq + 128, offsets, 4, w + 4 * stride)), Vector256.Create(products[4]), a0);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq + 160, offsets, 5, w + 5 * stride)), Vector256.Create(products[5]), a1);
            if (four)
            {
                a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq + 192, offsets, 6, w + 6 * stride)), Vector256.Create(products[6]), a2);
                a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq + 224, offsets, 7, w + 7 * stride)), Vector256.Create(products[7]), a3);
            }
            else
            {
                a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq + 192, offsets, 6, w + 6 * stride)), Vector256.Create(products[6]), a0);
                a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq + 224, offsets, 7, w + 7 * stride)), Vector256.Create(products[7]), a1);
            }
        }
        for (int g = g8; g < groups; g++, xq += 32, w += stride)
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(GroupDot<TQ4, TVnni>(xq, xOffsets, g, w)), Vector256.Create(scales[g] * xScales[g]), a0);
        return Vector256.Sum((a0 + a1) + (a2 + a3));
    }

    /// <summary>Scales of groups [g, g + 8) as f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Scales8(RowScales scales, int g)
        => scales.BF16 != null
            ? Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(scales.BF16 + g), 16).AsSingle()
            : Vector256.Load(scales.F32 + g);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> GroupDot<TQ4, TVnni>(sbyte* xq, int* xOffsets, int g, byte* w)
        where TQ4 : struct, IFlag where TVnni : struct, IFlag
        => TQ4.Value ? DotQ4Group(TVnni.Value, xq, xOffsets[g], w) : DotI8Group(TVnni.Value, xq, (sbyte*)w);

    /// <summary>One int8 group: the sign trick makes the weight the unsigned operand (|w|) and moves its sign onto the
    /// activation (sign(x, w)), so u8 × s8 products equal w · x exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DotI8Group(bool vnni, sbyte* xq, sbyte* w)
    {
        var wv = Vector256.Load(w);
        return DotBytes(vnni, Vector256<int>.Zero, Avx2.Abs(wv), Avx2.Sign(Vector256.Load(xq), wv));
    }

    /// <summary>One q4 group: byte j holds column j (low nibble) and column j + 16 (high nibble), so [low | high]
    /// is the group's 32 codes in column order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DotQ4Group(bool vnni, sbyte* xq, int xOffset, byte* packed)
    {
        // The 16 bytes in both halves, the upper half's dwords shifted right by 4: after the mask, each byte of the
        // upper half is its own high nibble (what a dword shift brings down from the next byte is masked off).
        var bytes = Avx2.BroadcastVector128ToVector256(packed).AsUInt32();
        var codes = Avx2.ShiftRightLogicalVariable(bytes, Vector256.Create(0u, 0, 0, 0, 4, 4, 4, 4)).AsByte() & Vector256.Create((byte)0x0F);
        return DotBytes(vnni, Vector256.CreateScalar(xOffset), codes, Vector256.Load(xq));
    }
}
