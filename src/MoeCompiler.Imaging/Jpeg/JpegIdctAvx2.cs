using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Imaging.Jpeg;

/// <summary>
/// The islow IDCT of <see cref="JpegIdct"/> on eight lanes at once (AVX2, 32-bit lanes as libjpeg-turbo's SIMD
/// islow uses): the column pass works on row vectors, the block is transposed, the row pass runs the same
/// butterfly, and a second transpose brings the rows back. Bit-identical to the scalar path for valid data.
/// </summary>
internal static class JpegIdctAvx2
{
    public static bool IsSupported => Avx2.IsSupported;

    private const int ConstBits = 13, Pass1Bits = 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Mul(Vector256<int> a, int c) => Avx2.MultiplyLow(a, Vector256.Create(c));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Butterfly(
        Vector256<int> x0, Vector256<int> x1, Vector256<int> x2, Vector256<int> x3,
        Vector256<int> x4, Vector256<int> x5, Vector256<int> x6, Vector256<int> x7, int shift,
        out Vector256<int> o0, out Vector256<int> o1, out Vector256<int> o2, out Vector256<int> o3,
        out Vector256<int> o4, out Vector256<int> o5, out Vector256<int> o6, out Vector256<int> o7)
    {
        var z1 = Mul(x2 + x6, 4433);
        var tmp2 = z1 + Mul(x6, -15137);
        var tmp3 = z1 + Mul(x2, 6270);
        var tmp0 = Avx2.ShiftLeftLogical(x0 + x4, ConstBits);
        var tmp1 = Avx2.ShiftLeftLogical(x0 - x4, ConstBits);
        var tmp10 = tmp0 + tmp3;
        var tmp13 = tmp0 - tmp3;
        var tmp11 = tmp1 + tmp2;
        var tmp12 = tmp1 - tmp2;

        var t0 = x7;
        var t1 = x5;
        var t2 = x3;
        var t3 = x1;
        var zz1 = t0 + t3;
        var zz2 = t1 + t2;
        var zz3 = t0 + t2;
        var zz4 = t1 + t3;
        var z5 = Mul(zz3 + zz4, 9633);
        t0 = Mul(t0, 2446);
        t1 = Mul(t1, 16819);
        t2 = Mul(t2, 25172);
        t3 = Mul(t3, 12299);
        zz1 = Mul(zz1, -7373);
        zz2 = Mul(zz2, -20995);
        zz3 = Mul(zz3, -16069) + z5;
        zz4 = Mul(zz4, -3196) + z5;
        t0 += zz1 + zz3;
        t1 += zz2 + zz4;
        t2 += zz2 + zz3;
        t3 += zz1 + zz4;

        var round = Vector256.Create(1 << (shift - 1));
        o0 = (tmp10 + t3 + round) >> shift;
        o7 = (tmp10 - t3 + round) >> shift;
        o1 = (tmp11 + t2 + round) >> shift;
        o6 = (tmp11 - t2 + round) >> shift;
        o2 = (tmp12 + t1 + round) >> shift;
        o5 = (tmp12 - t1 + round) >> shift;
        o3 = (tmp13 + t0 + round) >> shift;
        o4 = (tmp13 - t0 + round) >> shift;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose(ref Vector256<int> r0, ref Vector256<int> r1, ref Vector256<int> r2, ref Vector256<int> r3,
        ref Vector256<int> r4, ref Vector256<int> r5, ref Vector256<int> r6, ref Vector256<int> r7)
    {
        var t0 = Avx2.UnpackLow(r0, r1);
        var t1 = Avx2.UnpackHigh(r0, r1);
        var t2 = Avx2.UnpackLow(r2, r3);
        var t3 = Avx2.UnpackHigh(r2, r3);
        var t4 = Avx2.UnpackLow(r4, r5);
        var t5 = Avx2.UnpackHigh(r4, r5);
        var t6 = Avx2.UnpackLow(r6, r7);
        var t7 = Avx2.UnpackHigh(r6, r7);
        var u0 = Avx2.UnpackLow(t0.AsInt64(), t2.AsInt64()).AsInt32();
        var u1 = Avx2.UnpackHigh(t0.AsInt64(), t2.AsInt64()).AsInt32();
        var u2 = Avx2.UnpackLow(t1.AsInt64(), t3.AsInt64()).AsInt32();
        var u3 = Avx2.UnpackHigh(t1.AsInt64(), t3.AsInt64()).AsInt32();
        var u4 = Avx2.UnpackLow(t4.AsInt64(), t6.AsInt64()).AsInt32();
        var u5 = Avx2.UnpackHigh(t4.AsInt64(), t6.AsInt64()).AsInt32();
        var u6 = Avx2.UnpackLow(t5.AsInt64(), t7.AsInt64()).AsInt32();
        var u7 = Avx2.UnpackHigh(t5.AsInt64(), t7.AsInt64()).AsInt32();
        r0 = Avx2.Permute2x128(u0, u4, 0x20);
        r1 = Avx2.Permute2x128(u1, u5, 0x20);
        r2 = Avx2.Permute2x128(u2, u6, 0x20);
        r3 = Avx2.Permute2x128(u3, u7, 0x20);
        r4 = Avx2.Permute2x128(u0, u4, 0x31);
        r5 = Avx2.Permute2x128(u1, u5, 0x31);
        r6 = Avx2.Permute2x128(u2, u6, 0x31);
        r7 = Avx2.Permute2x128(u3, u7, 0x31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> LoadRow(ref short coefficients, ref int quant, int row)
    {
        var c = Avx2.ConvertToVector256Int32(Vector128.LoadUnsafe(ref coefficients, (nuint)(8 * row)));
        return Avx2.MultiplyLow(c, Vector256.LoadUnsafe(ref quant, (nuint)(8 * row)));
    }

    /// <summary>quant: the component's table widened to 64 ints (natural order).</summary>
    public static void Transform(ReadOnlySpan<short> coefficients, ReadOnlySpan<int> quant, Span<byte> output, int outputStride)
    {
        if (coefficients.Length < 64 || quant.Length < 64 || output.Length < 7 * outputStride + 8)
            throw new ArgumentException("IDCT buffers are too small");
        ref short c = ref Unsafe.AsRef(in coefficients[0]);
        ref int q = ref Unsafe.AsRef(in quant[0]);
        var r0 = LoadRow(ref c, ref q, 0);
        var r1 = LoadRow(ref c, ref q, 1);
        var r2 = LoadRow(ref c, ref q, 2);
        var r3 = LoadRow(ref c, ref q, 3);
        var r4 = LoadRow(ref c, ref q, 4);
        var r5 = LoadRow(ref c, ref q, 5);
        var r6 = LoadRow(ref c, ref q, 6);
        var r7 = LoadRow(ref c, ref q, 7);
        Butterfly(r0, r1, r2, r3, r4, r5, r6, r7, ConstBits - Pass1Bits,
            out r0, out r1, out r2, out r3, out r4, out r5, out r6, out r7);
        Transpose(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
        Butterfly(r0, r1, r2, r3, r4, r5, r6, r7, ConstBits + Pass1Bits + 3,
            out r0, out r1, out r2, out r3, out r4, out r5, out r6, out r7);
        Transpose(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);

        var bias = Vector256.Create(128);
        Store(r0 + bias, r1 + bias, output, 0, outputStride);
        Store(r2 + bias, r3 + bias, output, 2, outputStride);
        Store(r4 + bias, r5 + bias, output, 4, outputStride);
        Store(r6 + bias, r7 + bias, output, 6, outputStride);
    }

    /// <summary>Saturates two rows of 8 ints to bytes (packs clamp like libjpeg-turbo's SIMD) and stores them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector256<int> a, Vector256<int> b, Span<byte> output, int row, int stride)
    {
        // packs works per 128-bit lane: [a0..3 b0..3 | a4..7 b4..7]; reorder the 64-bit quarters to [a | b].
        var words = Avx2.PackSignedSaturate(a, b);
        words = Avx2.Permute4x64(words.AsInt64(), 0b11_01_10_00).AsInt16();
        var bytes = Avx2.PackUnsignedSaturate(words, words).AsUInt64(); // lane 0: [a a], lane 1: [b b]
        Unsafe.WriteUnaligned(ref output[row * stride], bytes.GetElement(0));
        Unsafe.WriteUnaligned(ref output[(row + 1) * stride], bytes.GetElement(2));
    }
}
