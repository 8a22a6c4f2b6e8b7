namespace MoeCompiler.Imaging.Jpeg;

/// <summary>
/// The accurate integer IDCT of libjpeg (jidctint.c, "islow"; Loeffler-Ligtenberg-Moschytz with 13-bit
/// constants, 2 extra bits between passes), which is djpeg's and Pillow's default. The final clamp saturates
/// like libjpeg-turbo's SIMD path; for in-range data it equals the C range-limit table.
/// </summary>
internal static class JpegIdct
{
    private const int ConstBits = 13, Pass1Bits = 2;
    private const int Fix0298631336 = 2446, Fix0390180644 = 3196, Fix0541196100 = 4433, Fix0765366865 = 6270;
    private const int Fix0899976223 = 7373, Fix1175875602 = 9633, Fix1501321110 = 12299, Fix1847759065 = 15137;
    private const int Fix1961570560 = 16069, Fix2053119869 = 16819, Fix2562915447 = 20995, Fix3072711026 = 25172;

    /// <summary>Inverse-transforms one block of quantised coefficients (natural order) into 8x8 samples.</summary>
    public static void Transform(ReadOnlySpan<short> coefficients, ReadOnlySpan<ushort> quant, Span<byte> output, int outputStride)
    {
        Span<int> ws = stackalloc int[64];
        for (int c = 0; c < 8; c++)
        {
            if (coefficients[8 + c] == 0 && coefficients[16 + c] == 0 && coefficients[24 + c] == 0 && coefficients[32 + c] == 0 &&
                coefficients[40 + c] == 0 && coefficients[48 + c] == 0 && coefficients[56 + c] == 0)
            {
                int dc = coefficients[c] * quant[c] << Pass1Bits;
                for (int r = 0; r < 8; r++) ws[8 * r + c] = dc;
                continue;
            }
            long z2 = coefficients[16 + c] * quant[16 + c], z3 = coefficients[48 + c] * quant[48 + c];
            long z1 = (z2 + z3) * Fix0541196100;
            long tmp2 = z1 + z3 * -Fix1847759065;
            long tmp3 = z1 + z2 * Fix0765366865;
            z2 = coefficients[c] * quant[c];
            z3 = coefficients[32 + c] * quant[32 + c];
            long tmp0 = (z2 + z3) << ConstBits, tmp1 = (z2 - z3) << ConstBits;
            long tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;

            tmp0 = coefficients[56 + c] * quant[56 + c];
            tmp1 = coefficients[40 + c] * quant[40 + c];
            tmp2 = coefficients[24 + c] * quant[24 + c];
            tmp3 = coefficients[8 + c] * quant[8 + c];
            Odd(ref tmp0, ref tmp1, ref tmp2, ref tmp3);

            const int shift = ConstBits - Pass1Bits;
            const long round = 1L << (shift - 1);
            ws[c] = (int)((tmp10 + tmp3 + round) >> shift);
            ws[56 + c] = (int)((tmp10 - tmp3 + round) >> shift);
            ws[8 + c] = (int)((tmp11 + tmp2 + round) >> shift);
            ws[48 + c] = (int)((tmp11 - tmp2 + round) >> shift);
            ws[16 + c] = (int)((tmp12 + tmp1 + round) >> shift);
            ws[40 + c] = (int)((tmp12 - tmp1 + round) >> shift);
            ws[24 + c] = (int)((tmp13 + tmp0 + round) >> shift);
            ws[32 + c] = (int)((tmp13 - tmp0 + round) >> shift);
        }

        for (int r = 0; r < 8; r++)
        {
            var w = ws.Slice(8 * r, 8);
            var o = output.Slice(r * outputStride, 8);
            long z2 = w[2], z3 = w[6];
            long z1 = (z2 + z3) * Fix0541196100;
            long tmp2 = z1 + z3 * -Fix1847759065;
            long tmp3 = z1 + z2 * Fix0765366865;
            long tmp0 = ((long)w[0] + w[4]) << ConstBits, tmp1 = ((long)w[0] - w[4]) << ConstBits;
            long tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
            tmp0 = w[7]; tmp1 = w[5]; tmp2 = w[3]; tmp3 = w[1];
            Odd(ref tmp0, ref tmp1, ref tmp2, ref tmp3);

            const int shift = ConstBits + Pass1Bits + 3;
            const long round = 1L << (shift - 1);
            o[0] = Clamp((tmp10 + tmp3 + round) >> shift);
            o[7] = Clamp((tmp10 - tmp3 + round) >> shift);
            o[1] = Clamp((tmp11 + tmp2 + round) >> shift);
            o[6] = Clamp((tmp11 - tmp2 + round) >> shift);
            o[2] = Clamp((tmp12 + tmp1 + round) >> shift);
            o[5] = Clamp((tmp12 - tmp1 + round) >> shift);
            o[3] = Clamp((tmp13 + tmp0 + round) >> shift);
            o[4] = Clamp((tmp13 - tmp0 + round) >> shift);
        }
    }

    private static void Odd(ref long tmp0, ref long tmp1, ref long tmp2, ref long tmp3)
    {
        long z1 = tmp0 + tmp3, z2 = tmp1 + tmp2, z3 = tmp0 + tmp2, z4 = tmp1 + tmp3;
        long z5 = (z3 + z4) * Fix1175875602;
        tmp0 *= Fix0298631336;
        tmp1 *= Fix2053119869;
        tmp2 *= Fix3072711026;
        tmp3 *= Fix1501321110;
        z1 *= -Fix0899976223;
        z2 *= -Fix2562915447;
        z3 *= -Fix1961570560;
        z4 *= -Fix0390180644;
        z3 += z5;
        z4 += z5;
        tmp0 += z1 + z3;
        tmp1 += z2 + z4;
        tmp2 += z2 + z3;
        tmp3 += z1 + z4;
    }

    private static byte Clamp(long v)
    {
        v += 128;
        return v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
    }
}
