using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Imaging.Jpeg;

/// <summary>
/// Vectorised forms of the two per-pixel steps that dominate JPEG output: h2v2 fancy upsampling and YCbCr→RGB
/// with interleaving. Both compute exactly what the scalar code (libjpeg's formulas) computes; the tests compare
/// them on random rows. Callers fall back to scalar code when <see cref="IsSupported"/> is false.
/// </summary>
internal static class JpegSimd
{
    public static bool IsSupported => Avx2.IsSupported && Ssse3.IsSupported;

    /// <summary>
    /// libjpeg's h2v2_fancy_upsample for one output row: <paramref name="near"/> is the input row the output row
    /// belongs to, <paramref name="far"/> the neighbour above (upper output row) or below (lower one).
    /// Requires dw &gt; 2; writes 2·dw samples.
    /// </summary>
    public static void UpsampleH2V2Fancy(ReadOnlySpan<byte> near, ReadOnlySpan<byte> far, int dw, Span<byte> output, Span<short> columnSums)
    {
        if (near.Length < dw || far.Length < dw || output.Length < 2 * dw || columnSums.Length < dw)
            throw new ArgumentException("upsampling buffers are too small");
        int x = 0;
        for (; x + 16 <= dw; x += 16)
        {
            var n = Vector128.LoadUnsafe(ref Unsafe.AsRef(in near[x]));
            var f = Vector128.LoadUnsafe(ref Unsafe.AsRef(in far[x]));
            var (nLo, nHi) = Vector128.Widen(n);
            var (fLo, fHi) = Vector128.Widen(f);
            (nLo * 3 + fLo).AsInt16().StoreUnsafe(ref columnSums[x]);
            (nHi * 3 + fHi).AsInt16().StoreUnsafe(ref columnSums[x + 8]);
        }
        for (; x < dw; x++) columnSums[x] = (short)(near[x] * 3 + far[x]);

        output[0] = (byte)((columnSums[0] * 4 + 8) >> 4);
        output[1] = (byte)((columnSums[0] * 3 + columnSums[1] + 7) >> 4);
        x = 1;
        var eight = Vector128.Create((short)8);
        var seven = Vector128.Create((short)7);
        for (; x + 9 <= dw; x += 8)
        {
            var current = Vector128.LoadUnsafe(ref columnSums[x]);
            var previous = Vector128.LoadUnsafe(ref columnSums[x - 1]);
            var next = Vector128.LoadUnsafe(ref columnSums[x + 1]);
            var tripled = current * 3;
            var even = Vector128.ShiftRightLogical(tripled + previous + eight, 4);
            var odd = Vector128.ShiftRightLogical(tripled + next + seven, 4);
            var lo = Sse2.UnpackLow(even, odd);
            var hi = Sse2.UnpackHigh(even, odd);
            Sse2.PackUnsignedSaturate(lo, hi).StoreUnsafe(ref output[2 * x]);
        }
        for (; x < dw - 1; x++)
        {
            int current = columnSums[x];
            output[2 * x] = (byte)((current * 3 + columnSums[x - 1] + 8) >> 4);
            output[2 * x + 1] = (byte)((current * 3 + columnSums[x + 1] + 7) >> 4);
        }
        int last = columnSums[dw - 1];
        output[2 * dw - 2] = (byte)((last * 3 + columnSums[dw - 2] + 8) >> 4);
        output[2 * dw - 1] = (byte)((last * 4 + 7) >> 4);
    }

    private static readonly Vector128<byte>[] InterleaveMasks = BuildInterleaveMasks();

    /// <summary>Shuffle masks taking R, G and B vectors of 16 pixels to 48 interleaved bytes (3 outputs × 3 sources).</summary>
    private static Vector128<byte>[] BuildInterleaveMasks()
    {
        var masks = new Vector128<byte>[9];
        Span<byte> m = stackalloc byte[16];
        for (int output = 0; output < 3; output++)
            for (int channel = 0; channel < 3; channel++)
            {
                for (int t = 0; t < 16; t++)
                {
                    int o = 16 * output + t;
                    m[t] = o % 3 == channel ? (byte)(o / 3) : (byte)0x80;
                }
                masks[3 * output + channel] = Vector128.Create((ReadOnlySpan<byte>)m);
            }
        return masks;
    }

    /// <summary>libjpeg's ycc_rgb_convert (its fixed-point tables written as arithmetic) into interleaved RGB.</summary>
    public static void YCbCrToRgb(ReadOnlySpan<byte> luma, ReadOnlySpan<byte> cb, ReadOnlySpan<byte> cr, Span<byte> rgb, int width)
    {
        if (luma.Length < width || cb.Length < width || cr.Length < width || rgb.Length < 3 * width)
            throw new ArgumentException("colour conversion buffers are too small");
        var masks = InterleaveMasks;
        int x = 0;
        for (; x + 16 <= width; x += 16)
        {
            var y16 = Vector128.LoadUnsafe(ref Unsafe.AsRef(in luma[x]));
            var cb16 = Vector128.LoadUnsafe(ref Unsafe.AsRef(in cb[x]));
            var cr16 = Vector128.LoadUnsafe(ref Unsafe.AsRef(in cr[x]));
            var (r0, g0, b0) = Convert8(Avx2.ConvertToVector256Int32(y16), Avx2.ConvertToVector256Int32(cb16), Avx2.ConvertToVector256Int32(cr16));
            var (r1, g1, b1) = Convert8(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(y16, 8)),
                Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(cb16, 8)),
                Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(cr16, 8)));
            var r = ToBytes(r0, r1);
            var g = ToBytes(g0, g1);
            var b = ToBytes(b0, b1);
            ref byte target = ref rgb[3 * x];
            for (int o = 0; o < 3; o++)
            {
                var v = Ssse3.Shuffle(r, masks[3 * o]) | Ssse3.Shuffle(g, masks[3 * o + 1]) | Ssse3.Shuffle(b, masks[3 * o + 2]);
                v.StoreUnsafe(ref target, (nuint)(16 * o));
            }
        }
        for (; x < width; x++)
        {
            int yy = luma[x], blue = cb[x] - 128, red = cr[x] - 128;
            rgb[3 * x] = Clamp(yy + ((91881 * red + 32768) >> 16));
            rgb[3 * x + 1] = Clamp(yy + ((-22554 * blue - 46802 * red + 32768) >> 16));
            rgb[3 * x + 2] = Clamp(yy + ((116130 * blue + 32768) >> 16));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<int> R, Vector256<int> G, Vector256<int> B) Convert8(Vector256<int> y, Vector256<int> cb, Vector256<int> cr)
    {
        var offset = Vector256.Create(128);
        var half = Vector256.Create(32768);
        cb -= offset;
        cr -= offset;
        var r = y + ((Avx2.MultiplyLow(cr, Vector256.Create(91881)) + half) >> 16);
        var g = y + ((Avx2.MultiplyLow(cb, Vector256.Create(-22554)) + Avx2.MultiplyLow(cr, Vector256.Create(-46802)) + half) >> 16);
        var b = y + ((Avx2.MultiplyLow(cb, Vector256.Create(116130)) + half) >> 16);
        return (r, g, b);
    }

    /// <summary>Two vectors of 8 ints → 16 bytes, saturating to 0..255, in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> ToBytes(Vector256<int> a, Vector256<int> b)
    {
        var words = Avx2.PackSignedSaturate(a, b);                            // [a0-3 b0-3 | a4-7 b4-7]
        words = Avx2.Permute4x64(words.AsInt64(), 0b11_01_10_00).AsInt16();  // [a0-7 | b0-7]
        return Sse2.PackUnsignedSaturate(words.GetLower(), words.GetUpper());
    }

    private static byte Clamp(int v) => v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
}
