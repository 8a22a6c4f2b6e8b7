using MoeCompiler.Imaging.Jpeg;

namespace MoeCompiler.Imaging.Tests;

public class JpegIdctTests
{
    /// <summary>A plain double-precision IDCT (the JPEG standard's formula), an independent reference.</summary>
    private static double[] ReferenceIdct(short[] coefficients, ushort[] quant)
    {
        var result = new double[64];
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++)
            {
                double sum = 0;
                for (int v = 0; v < 8; v++)
                    for (int u = 0; u < 8; u++)
                    {
                        double cu = u == 0 ? Math.Sqrt(0.5) : 1, cv = v == 0 ? Math.Sqrt(0.5) : 1;
                        sum += cu * cv * coefficients[8 * v + u] * quant[8 * v + u]
                               * Math.Cos((2 * x + 1) * u * Math.PI / 16) * Math.Cos((2 * y + 1) * v * Math.PI / 16);
                    }
                result[8 * y + x] = Math.Clamp(sum / 4 + 128, 0, 255);
            }
        return result;
    }

    private static (short[] Coefficients, ushort[] Quant) RandomBlock(Random random)
    {
        var coefficients = new short[64];
        var quant = new ushort[64];
        for (int i = 0; i < 64; i++)
        {
            quant[i] = (ushort)random.Next(1, 40);
            int magnitude = i == 0 ? 60 : random.Next(4) == 0 ? 30 : 2;
            coefficients[i] = (short)random.Next(-magnitude, magnitude + 1);
        }
        return (coefficients, quant);
    }

    [Fact]
    public void Integer_idct_is_within_one_level_of_the_exact_transform()
    {
        var random = new Random(3);
        var output = new byte[64];
        for (int n = 0; n < 2000; n++)
        {
            var (coefficients, quant) = RandomBlock(random);
            JpegIdct.Transform(coefficients, quant, output, 8);
            var expected = ReferenceIdct(coefficients, quant);
            for (int i = 0; i < 64; i++)
                Assert.True(Math.Abs(output[i] - expected[i]) <= 1.0, $"block {n} sample {i}: {output[i]} vs {expected[i]:F3}");
        }
    }

    [Fact]
    public void Avx2_idct_is_bit_identical_to_the_scalar_one()
    {
        if (!JpegIdctAvx2.IsSupported) return; // nothing to compare on this CPU
        var random = new Random(4);
        var scalar = new byte[64];
        var vector = new byte[16 * 8];
        for (int n = 0; n < 5000; n++)
        {
            var (coefficients, quant) = RandomBlock(random);
            if (n % 7 == 0) Array.Clear(coefficients, 1, 63); // DC-only blocks take libjpeg's shortcut in the scalar path
            if (n % 11 == 0) coefficients[0] = (short)random.Next(-1500, 1500); // saturating outputs
            JpegIdct.Transform(coefficients, quant, scalar, 8);
            JpegIdctAvx2.Transform(coefficients, Array.ConvertAll(quant, q => (int)q), vector, 16);
            for (int y = 0; y < 8; y++)
                Assert.Equal(scalar.AsSpan(8 * y, 8).ToArray(), vector.AsSpan(16 * y, 8).ToArray());
        }
    }
}
