using MoeCompiler.Imaging.Jpeg;

namespace MoeCompiler.Imaging.Tests;

/// <summary>The vector paths against plain loops of libjpeg's formulas (jdsample.c h2v2_fancy_upsample, jdcolor.c).</summary>
public class JpegSimdTests
{
    [Fact]
    public void Fancy_h2v2_upsampling_matches_libjpeg_formula()
    {
        if (!JpegSimd.IsSupported) return;
        var random = new Random(5);
        foreach (int dw in new[] { 3, 4, 9, 10, 16, 17, 25, 33, 100, 257 })
        {
            var near = new byte[dw + 8];
            var far = new byte[dw + 8];
            random.NextBytes(near);
            random.NextBytes(far);
            var actual = new byte[2 * dw + 16];
            JpegSimd.UpsampleH2V2Fancy(near, far, dw, actual, new short[dw + 16]);

            var sums = new int[dw];
            for (int x = 0; x < dw; x++) sums[x] = near[x] * 3 + far[x];
            var expected = new byte[2 * dw];
            expected[0] = (byte)((sums[0] * 4 + 8) >> 4);
            expected[1] = (byte)((sums[0] * 3 + sums[1] + 7) >> 4);
            for (int x = 1; x < dw - 1; x++)
            {
                expected[2 * x] = (byte)((sums[x] * 3 + sums[x - 1] + 8) >> 4);
                expected[2 * x + 1] = (byte)((sums[x] * 3 + sums[x + 1] + 7) >> 4);
            }
            expected[2 * dw - 2] = (byte)((sums[dw - 1] * 3 + sums[dw - 2] + 8) >> 4);
            expected[2 * dw - 1] = (byte)((sums[dw - 1] * 4 + 7) >> 4);
            Assert.Equal(expected, actual.AsSpan(0, 2 * dw).ToArray());
        }
    }

    [Fact]
    public void Ycbcr_conversion_matches_libjpeg_tables()
    {
        if (!JpegSimd.IsSupported) return;
        // jdcolor.c build_ycc_rgb_table, literally.
        static int Fix(double x) => (int)(x * 65536 + 0.5);
        var crR = new int[256]; var cbB = new int[256]; var crG = new int[256]; var cbG = new int[256];
        for (int i = 0; i < 256; i++)
        {
            int x = i - 128;
            crR[i] = (Fix(1.40200) * x + 32768) >> 16;
            cbB[i] = (Fix(1.77200) * x + 32768) >> 16;
            crG[i] = -Fix(0.71414) * x;
            cbG[i] = -Fix(0.34414) * x + 32768;
        }
        static byte Clamp(int v) => (byte)Math.Clamp(v, 0, 255);

        var random = new Random(6);
        foreach (int width in new[] { 1, 15, 16, 17, 48, 333 })
        {
            var y = new byte[width]; var cb = new byte[width]; var cr = new byte[width];
            random.NextBytes(y); random.NextBytes(cb); random.NextBytes(cr);
            if (width == 333) { y[0] = 255; cb[0] = 255; cr[0] = 255; y[1] = 0; cb[1] = 0; cr[1] = 0; }
            var actual = new byte[3 * width];
            JpegSimd.YCbCrToRgb(y, cb, cr, actual, width);
            for (int x = 0; x < width; x++)
            {
                Assert.Equal(Clamp(y[x] + crR[cr[x]]), actual[3 * x]);
                Assert.Equal(Clamp(y[x] + ((cbG[cb[x]] + crG[cr[x]]) >> 16)), actual[3 * x + 1]);
                Assert.Equal(Clamp(y[x] + cbB[cb[x]]), actual[3 * x + 2]);
            }
        }
    }
}
