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
    /// group of 32 the f32 scale and −8 × the sum of the group's int8 values (q4's offset correction), then the same
    /// int8 values again in q4's order (<see cref="SwizzleQ4Quads"/>).</summary>
    internal readonly struct QuantizedActivations(sbyte* values, float* scales, int* offsets, sbyte* swizzled, int k)
    {
        public readonly sbyte* Values = values;
        public readonly float* Scales = scales;
        public readonly int* Offsets = offsets;
        public readonly sbyte* Swizzled = swizzled;
        public readonly int K = k;

        public sbyte* Row(int i) => Values + (long)i * K;
        public sbyte* SwizzledRow(int i) => Swizzled + (long)i * K;
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
        return 2 * values + 2 * ((groups * 4 + 63) & ~63L);
    }

    /// <summary>Lays out and fills the quantised activations of x [m, k] in <paramref name="buffer"/>
    /// (<see cref="QuantizedActivationBytes"/> long).</summary>
    public static QuantizedActivations QuantizeActivations(KernelIsa isa, float* x, int m, int k, byte* buffer)
    {
        long values = ((long)m * k + 63) & ~63L;
        long groups = (long)m * (k / WeightQuantizerGroup);
        long groupBytes = (groups * 4 + 63) & ~63L;
        var q = new QuantizedActivations((sbyte*)buffer, (float*)(buffer + values), (int*)(buffer + values + groupBytes),
            (sbyte*)(buffer + values + 2 * groupBytes), k);
        for (int i = 0; i < m; i++)
        {
            QuantizeActivationRow(isa, x + (long)i * k, k, q.Row(i), q.RowScales(i), q.RowOffsets(i));
            SwizzleQ4Quads(q.Row(i), k, q.SwizzledRow(i));
        }
        return q;
    }

    /// <summary>
    /// q4's activation order: for every four groups (4j .. 4j + 3) the 128 bytes as [columns 0–15 of each of the four
    /// groups, then columns 16–31 of each], so that the low nibbles of a 64-byte load of q4 weights (four groups of
    /// 16 bytes; byte j holds column j low and column j + 16 high) multiply the first 64 bytes and the high nibbles the
    /// second 64 (a 32-byte load of two groups: the matching 32-byte quarters). A last partial quad is copied as is.
    /// </summary>
    public static void SwizzleQ4Quads(sbyte* q, int k, sbyte* target)
    {
        int c = 0;
        for (; c + 128 <= k; c += 128)
            for (int g = 0; g < 4; g++)
            {
                Buffer.MemoryCopy(q + c + 32 * g, target + c + 16 * g, 16, 16);
                Buffer.MemoryCopy(q + c + 32 * g + 16, target + c + 64 + 16 * g, 16, 16);
            }
        if (c < k) Buffer.MemoryCopy(q + c, target + c, k - c, k - c);
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

    /// <summary>Weight rows [start, end) of <paramref name="w"/> against activation row <paramref name="row"/> (and
    /// row + 1 with <paramref name="two"/>) with the blocked kernels, the row loop inside the specialised kernel so
    /// that its set-up and the call are paid once per task, not per weight row (<see cref="PerRowIntegerCalls"/>: once
    /// per row, the same bits): y[i · n + j] = dot + bias[j]. Row i's results do not depend on row i ± 1.</summary>
    public static void IntegerRowsBlocked(KernelIsa isa, bool vnni, bool q4, bool two, QuantizedActivations x, int row, WeightView w,
        int start, int end, float* bias, float* y, int n)
    {
        if (q4)
        {
            if (vnni)
            {
                if (two) RowsBlocked<Yes, Yes, Yes>(isa, x, row, w, start, end, bias, y, n);
                else RowsBlocked<Yes, Yes, No>(isa, x, row, w, start, end, bias, y, n);
            }
            else if (two) RowsBlocked<Yes, No, Yes>(isa, x, row, w, start, end, bias, y, n);
            else RowsBlocked<Yes, No, No>(isa, x, row, w, start, end, bias, y, n);
        }
        else if (vnni)
        {
            if (two) RowsBlocked<No, Yes, Yes>(isa, x, row, w, start, end, bias, y, n);
            else RowsBlocked<No, Yes, No>(isa, x, row, w, start, end, bias, y, n);
        }
        else if (two) RowsBlocked<No, No, Yes>(isa, x, row, w, start, end, bias, y, n);
        else RowsBlocked<No, No, No>(isa, x, row, w, start, end, bias, y, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsBlocked<TQ4, TVnni, TTwo>(KernelIsa isa, QuantizedActivations x, int row, WeightView w,
        int start, int end, float* bias, float* y, int n)
        where TQ4 : struct, IFlag where TVnni : struct, IFlag where TTwo : struct, IFlag
    {
        sbyte* x0 = x.Row(row), z0 = x.SwizzledRow(row);
        float* s0 = x.RowScales(row);
        int* o0 = x.RowOffsets(row);
        sbyte* x1 = null, z1 = null;
        float* s1 = null;
        int* o1 = null;
        if (TTwo.Value)
        {
            x1 = x.Row(row + 1);
            z1 = x.SwizzledRow(row + 1);
            s1 = x.RowScales(row + 1);
            o1 = x.RowOffsets(row + 1);
        }
        long rowBytes = TQ4.Value ? (long)x.K / 2 : x.K;
        float* y0 = y + (long)row * n, y1 = TTwo.Value ? y + (long)(row + 1) * n : null;
        if (!PerRowIntegerCalls)
            DotIntegerBlocked<TQ4, TVnni, TTwo>(isa, x0, z0, s0, o0, x1, z1, s1, o1, w, rowBytes, start, end, bias, y0, y1);
        else
            for (int j = start; j < end; j++)
                DotIntegerBlocked<TQ4, TVnni, TTwo>(isa, x0, z0, s0, o0, x1, z1, s1, o1, w, rowBytes, j, j + 1, bias, y0, y1);
    }

    /// <summary>
    /// The blocked kernels: 8 groups (256 weights) per step, their 8 exact int32 group sums gathered into one vector
    /// with <c>vphaddd</c>, so the f32 combine is one convert and one multiply-add per 8 groups (the per-group kernel
    /// spends a convert, a broadcast and a multiply-add on every group).
    /// <list type="bullet">
    /// <item>q4 on AVX-512 (<see cref="Q4Wide"/>): each 64-byte load holds four groups; one <c>vpandd</c> and one
    /// <c>vpsrlw</c> + <c>vpandd</c> give their low and high nibbles, which multiply the activations in
    /// <see cref="SwizzleQ4Quads"/> order with <c>vpmaddubsw</c> (nibble × int8 pairs, exact in int16), the two
    /// halves added and widened by <c>vpmaddwd</c>: 4 partial sums per group. Two unpacks, two adds, a
    /// <c>vpshufd</c> and a <c>vpermd</c> reduce two such vectors to the 8 group sums in order (no <c>vphaddd</c>).</item>
    /// <item>q4 on AVX2: each 32-byte load holds two groups; their low and high nibbles multiply the matching
    /// quarters of the quad order (<c>vpdpbusd</c>, or <c>vpmaddubsw</c> + <c>vpmaddwd</c>): a vector of [4 partial
    /// sums of the first group | 4 of the second]. Three <c>vphaddd</c> sum four such vectors to [g0 g2 g4 g6 | g1 g3
    /// g5 g7], one <c>vpermd</c> restores group order.</item>
    /// <item>Both q4 forms add the −8 · Σ q_x offsets to exact sums, so they give the same bits.</item>
    /// <item>int8: per group, with AvxVnni, (w + 128) × x and the 128 · Σ x corrected per 8 groups from the
    /// offsets; without it |w| × sign(x, w) (the sign trick); six <c>vphaddd</c>, two lane swaps and an add sum
    /// 8 groups' vectors of 8 partial sums each.</item>
    /// </list>
    /// The 8 sums are converted and multiply-added with the 8 scale products into one accumulator per activation row;
    /// its lanes are summed at the end and the k mod 256 tail groups are added one by one (scalar fused multiply-add),
    /// in a fixed order: a row's result does not depend on the other row of a pair, the task or the thread count.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DotIntegerBlocked<TQ4, TVnni, TTwo>(KernelIsa isa, sbyte* xq0, sbyte* xz0, float* xScales0, int* xOffsets0,
        sbyte* xq1, sbyte* xz1, float* xScales1, int* xOffsets1, WeightView weights, long rowBytes, int start, int end,
        float* bias, float* y0, float* y1)
        where TQ4 : struct, IFlag where TVnni : struct, IFlag where TTwo : struct, IFlag
    {
      for (int row = start; row < end; row++)
      {
        byte* w = weights.Data + row * rowBytes;
        var scales = weights.RowScales(row);
        float bias0 = bias == null ? 0 : bias[row];
        bool q4 = TQ4.Value;
        int groups = scales.Groups;
        if (isa == KernelIsa.Scalar)
        {
            y0[row] = DotIntegerScalar(q4, xq0, xScales0, xOffsets0, w, scales) + bias0;
            if (TTwo.Value) y1[row] = DotIntegerScalar(q4, xq1, xScales1, xOffsets1, w, scales) + bias0;
            continue;
        }
        int stride = q4 ? 16 : 32;
        int prefetch = IntegerPrefetchBytes;
        Vector256<float> a = default, c = default;
        var nibbles = Vector256.Create((byte)0x0F);
        var order = Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7);
        bool wide = q4 && Q4Wide && isa == KernelIsa.Avx512;
        byte* wg = w;
        int g8 = 0;
        for (; g8 + 8 <= groups; g8 += 8, wg += 8 * stride)
        {
            var ws = Scales8(scales, g8);
            if (wide)
            {
                Sse.Prefetch0(wg + prefetch);
                Sse.Prefetch0(wg + prefetch + 64);
                var mask = Vector512.Create((byte)0x0F);
                var b0 = Vector512.Load(wg);
                var b1 = Vector512.Load(wg + 64);
                var l0 = b0 & mask; var h0 = Avx512BW.ShiftRightLogical(b0.AsUInt16(), 4).AsByte() & mask;
                var l1 = b1 & mask; var h1 = Avx512BW.ShiftRightLogical(b1.AsUInt16(), 4).AsByte() & mask;
                var sums = Q4Sums512(l0, h0, l1, h1, xz0 + 32 * g8) + Vector256.Load(xOffsets0 + g8);
                a = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), ws * Vector256.Load(xScales0 + g8), a);
                if (TTwo.Value)
                {
                    sums = Q4Sums512(l0, h0, l1, h1, xz1 + 32 * g8) + Vector256.Load(xOffsets1 + g8);
                    c = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), ws * Vector256.Load(xScales1 + g8), c);
                }
            }
            else if (q4)
            {
                Sse.Prefetch0(wg + prefetch);
                Sse.Prefetch0(wg + prefetch + 64);
                var b0 = Vector256.Load(wg);
                var b1 = Vector256.Load(wg + 32);
                var b2 = Vector256.Load(wg + 64);
                var b3 = Vector256.Load(wg + 96);
                var l0 = b0 & nibbles; var h0 = Avx2.ShiftRightLogical(b0.AsUInt16(), 4).AsByte() & nibbles;
                var l1 = b1 & nibbles; var h1 = Avx2.ShiftRightLogical(b1.AsUInt16(), 4).AsByte() & nibbles;
                var l2 = b2 & nibbles; var h2 = Avx2.ShiftRightLogical(b2.AsUInt16(), 4).AsByte() & nibbles;
                var l3 = b3 & nibbles; var h3 = Avx2.ShiftRightLogical(b3.AsUInt16(), 4).AsByte() & nibbles;
                sbyte* z = xz0 + 32 * g8;
                var sums = Q4Sums<TVnni>(l0, h0, l1, h1, l2, h2, l3, h3, z, order) + Vector256.Load(xOffsets0 + g8);
                a = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), ws * Vector256.Load(xScales0 + g8), a);
                if (TTwo.Value)
                {
                    z = xz1 + 32 * g8;
                    sums = Q4Sums<TVnni>(l0, h0, l1, h1, l2, h2, l3, h3, z, order) + Vector256.Load(xOffsets1 + g8);
                    c = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), ws * Vector256.Load(xScales1 + g8), c);
                }
            }
            else
            {
                Sse.Prefetch0(wg + prefetch);
                Sse.Prefetch0(wg + prefetch + 64);
                Sse.Prefetch0(wg + prefetch + 128);
                Sse.Prefetch0(wg + prefetch + 192);
                // Four groups at a time (registers): [g0..g3 first halves | second halves], then g4..g7.
                var lo0 = I8Sums4<TVnni>(wg, xq0 + 32 * g8);
                var hi0 = I8Sums4<TVnni>(wg + 128, xq0 + 32 * g8 + 128);
                var sums = Avx2.Permute2x128(lo0, hi0, 0x20) + Avx2.Permute2x128(lo0, hi0, 0x31);
                if (TVnni.Value) sums += Avx2.ShiftLeftLogical(Vector256.Load(xOffsets0 + g8), 4);
                a = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), ws * Vector256.Load(xScales0 + g8), a);
                if (TTwo.Value)
                {
                    var lo1 = I8Sums4<TVnni>(wg, xq1 + 32 * g8);
                    var hi1 = I8Sums4<TVnni>(wg + 128, xq1 + 32 * g8 + 128);
                    sums = Avx2.Permute2x128(lo1, hi1, 0x20) + Avx2.Permute2x128(lo1, hi1, 0x31);
                    if (TVnni.Value) sums += Avx2.ShiftLeftLogical(Vector256.Load(xOffsets1 + g8), 4);
                    c = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), ws * Vector256.Load(xScales1 + g8), c);
                }
            }
        }
        float r0 = Vector256.Sum(a), r1 = TTwo.Value ? Vector256.Sum(c) : 0;
        for (int g = g8; g < groups; g++, wg += stride)
        {
            var u = Unsigned<TQ4>(wg);
            float ws = scales[g];
            r0 = MathF.FusedMultiplyAdd(GroupSum<TQ4, TVnni>(u, wg, xq0 + 32 * g, xOffsets0, g), ws * xScales0[g], r0);
            if (TTwo.Value) r1 = MathF.FusedMultiplyAdd(GroupSum<TQ4, TVnni>(u, wg, xq1 + 32 * g, xOffsets1, g), ws * xScales1[g], r1);
        }
        y0[row] = r0 + bias0;
        if (TTwo.Value) y1[row] = r1 + bias0;
      }
    }

    /// <summary>Bytes ahead of the blocked kernels' loads that they prefetch (0: none); a field for the intdot A/B.</summary>
    internal static int IntegerPrefetchBytes = 4096;

    /// <summary>The 512-bit q4 kernel (default): a field for the intdot A/B; the same bits either way.</summary>
    internal static bool Q4Wide = true;

    /// <summary>Exact int32 sums of 8 q4 groups, in group order, without the offsets: nibbles l/h of groups 0–3
    /// (<paramref name="l0"/>, <paramref name="h0"/>) and 4–7, activations <paramref name="z"/> in
    /// <see cref="SwizzleQ4Quads"/> order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q4Sums512(Vector512<byte> l0, Vector512<byte> h0, Vector512<byte> l1, Vector512<byte> h1, sbyte* z)
    {
        // int16 lanes: 2 · (2 · 15 · 127) = 7620 at most, no saturation; then 4 int32 partial sums per group.
        var ones = Vector512.Create((short)1);
        var s0 = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(l0, Vector512.Load(z)) + Avx512BW.MultiplyAddAdjacent(h0, Vector512.Load(z + 64)), ones);
        var s1 = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(l1, Vector512.Load(z + 128)) + Avx512BW.MultiplyAddAdjacent(h1, Vector512.Load(z + 192)), ones);
        // 128-bit lane L of s0 is group L, of s1 group L + 4: interleave and fold twice, so that every lane holds
        // [sum of group L, sum of group L + 4, the same again], then gather dwords 0 and 1 of the four lanes in order.
        var t = Avx512F.UnpackLow(s0, s1) + Avx512F.UnpackHigh(s0, s1);
        var u = t + Avx512F.Shuffle(t, 0b01_00_11_10);
        return Avx512F.PermuteVar16x32(u, Vector512.Create(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0)).GetLower();
    }

    /// <summary>Exact int32 sums of 8 q4 groups (their nibbles l/h per pair of groups, activations <paramref name="z"/> in
    /// <see cref="SwizzleQ4Quads"/> order), in group order, without the offsets.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q4Sums<TVnni>(Vector256<byte> l0, Vector256<byte> h0, Vector256<byte> l1, Vector256<byte> h1,
        Vector256<byte> l2, Vector256<byte> h2, Vector256<byte> l3, Vector256<byte> h3, sbyte* z, Vector256<int> order)
        where TVnni : struct, IFlag
    {
        // Pair p of a quad: its low nibbles against the quad's first 64 bytes, high against the second, 32 each.
        var p0 = PairSum<TVnni>(l0, Vector256.Load(z), h0, Vector256.Load(z + 64));
        var p1 = PairSum<TVnni>(l1, Vector256.Load(z + 32), h1, Vector256.Load(z + 96));
        var p2 = PairSum<TVnni>(l2, Vector256.Load(z + 128), h2, Vector256.Load(z + 192));
        var p3 = PairSum<TVnni>(l3, Vector256.Load(z + 160), h3, Vector256.Load(z + 224));
        var sums = Avx2.HorizontalAdd(Avx2.HorizontalAdd(p0, p1), Avx2.HorizontalAdd(p2, p3)); // g0 g2 g4 g6 | g1 g3 g5 g7
        return Avx2.PermuteVar8x32(sums, order);
    }

    /// <summary>Σ l·x + Σ h·y in 8 int32 partial sums (exact: nibbles ≤ 15, so vpmaddubsw pairs of both stay in int16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PairSum<TVnni>(Vector256<byte> l, Vector256<sbyte> x, Vector256<byte> h, Vector256<sbyte> y)
        where TVnni : struct, IFlag
    {
        if (TVnni.Value) return AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, l, x), h, y);
        // 2 · 15 · 127 per pair, twice: 7620 < 32767.
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(l, x) + Avx2.MultiplyAddAdjacent(h, y), Vector256.Create((short)1));
    }

    /// <summary>
    /// 4 int8 groups' exact sums as [g0 g1 g2 g3 over their first 16 columns | the same over the last 16]. With
    /// AvxVnni the weight bytes go in as unsigned w + 128 (one <c>vpxor</c>), so Σ (w + 128) · x = Σ w · x + 128 · Σ x,
    /// which the caller corrects with 16 × the −8 · Σ x offsets; without it |w| × sign(x, w), the sign trick
    /// (<c>vpmaddubsw</c> would saturate on (w + 128) · x).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> I8Sums4<TVnni>(byte* w, sbyte* x) where TVnni : struct, IFlag
    {
        Vector256<int> d0, d1, d2, d3;
        if (TVnni.Value)
        {
            var bias = Vector256.Create((byte)0x80);
            d0 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Vector256.Load(w) ^ bias, Vector256.Load(x));
            d1 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Vector256.Load(w + 32) ^ bias, Vector256.Load(x + 32));
            d2 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Vector256.Load(w + 64) ^ bias, Vector256.Load(x + 64));
            d3 = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Vector256.Load(w + 96) ^ bias, Vector256.Load(x + 96));
        }
        else
        {
            d0 = SignedSum(Vector256.Load((sbyte*)w), x);
            d1 = SignedSum(Vector256.Load((sbyte*)w + 32), x + 32);
            d2 = SignedSum(Vector256.Load((sbyte*)w + 64), x + 64);
            d3 = SignedSum(Vector256.Load((sbyte*)w + 96), x + 96);
        }
        return Avx2.HorizontalAdd(Avx2.HorizontalAdd(d0, d1), Avx2.HorizontalAdd(d2, d3));
    }

    /// <summary>8 partial sums of Σ w·x over one int8 group as |w| × sign(x, w) with <c>vpmaddubsw</c> (exact:
    /// 2 · 128 · 127 &lt; 32767).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SignedSum(Vector256<sbyte> w, sbyte* x)
        => Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(w), Avx2.Sign(Vector256.Load(x), w)), Vector256.Create((short)1));

    /// <summary>One group's exact integer sum (the blocked kernels' tail), as an f32 (|sum| &lt; 2²⁴).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float GroupSum<TQ4, TVnni>(Vector256<byte> u, byte* w, sbyte* xq, int* offsets, int g)
        where TQ4 : struct, IFlag where TVnni : struct, IFlag
    {
        var x = Vector256.Load(xq);
        var dot = TQ4.Value
            ? DotBytes(TVnni.Value, Vector256.CreateScalar(offsets[g]), u, x)
            : DotBytes(TVnni.Value, Vector256<int>.Zero, u, Avx2.Sign(x, Vector256.Load((sbyte*)w)));
        return Vector256.Sum(dot);
    }

    /// <summary>A compile-time flag: the JIT specialises <see cref="RowsBlocked{TQ4, TVnni, TTwo}"/> per struct argument
    /// and folds the branches on it away.</summary>
    private interface IFlag { static abstract bool Value { get; } }
    private struct Yes : IFlag { public static bool Value => true; }
    private struct No : IFlag { public static bool Value => false; }

    private static float DotIntegerScalar(bool q4, sbyte* xq, float* xScales, int* xOffsets, byte* w, RowScales scales)
    {
        float sum = 0;
        for (int g = 0; g < scales.Groups; g++, xq += 32, w += q4 ? 16 : 32)
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

    /// <summary>The unsigned operand of a group: q4's 32 codes in column order, or |w| of int8 (the sign trick).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Unsigned<TQ4>(byte* w) where TQ4 : struct, IFlag
    {
        if (!TQ4.Value) return Avx2.Abs(Vector256.Load((sbyte*)w));
        // q4: byte j holds column j (low nibble) and column j + 16 (high nibble). The 16 bytes go into both halves, the
        // upper half's dwords shifted right by 4: after the mask each byte of the upper half is its own high nibble
        // (what a dword shift brings down from the next byte is masked off).
        var bytes = Avx2.BroadcastVector128ToVector256(w).AsUInt32();
        return Avx2.ShiftRightLogicalVariable(bytes, Vector256.Create(0u, 0, 0, 0, 4, 4, 4, 4)).AsByte() & Vector256.Create((byte)0x0F);
    }

    /// <summary>Scales of groups [g, g + 8) as f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Scales8(RowScales scales, int g)
        => scales.BF16 != null
            ? Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(scales.BF16 + g), 16).AsSingle()
            : Vector256.Load(scales.F32 + g);
}
