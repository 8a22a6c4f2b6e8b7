namespace MoeCompiler.Imaging.Processing;

/// <summary>
/// Bit-exact re-implementation of Pillow's <c>Image.resize(size, Image.BICUBIC)</c> on 8-bit RGB (ImagingResample:
/// separable passes, the filter support widened by the downscale factor, weights normalised in double precision,
/// then rounded to 22-bit fixed point; each pass rounds and clips to 8 bits). Horizontal pass first, over only the
/// rows the vertical pass reads; a pass is skipped when its size is unchanged, as Pillow does.
/// </summary>
public static class PillowResize
{
    private const int PrecisionBits = 32 - 8 - 2;
    private const double BicubicA = -0.5;
    private const double BicubicSupport = 2.0;

    public static RgbImage Bicubic(RgbImage image, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), $"Target size must be positive, got {width}x{height}.");
        if (width == image.Width && height == image.Height) return new RgbImage(width, height, (byte[])image.Pixels.Clone());

        bool horizontal = width != image.Width, vertical = height != image.Height;
        var (xBounds, xWeights, xSize) = Coefficients(image.Width, width);
        var (yBounds, yWeights, ySize) = Coefficients(image.Height, height);

        var source = image;
        if (horizontal)
        {
            int firstRow = 0, lastRow = image.Height;
            if (vertical)
            {
                firstRow = yBounds[0];
                lastRow = yBounds[(height - 1) * 2] + yBounds[(height - 1) * 2 + 1];
                for (int i = 0; i < height; i++) yBounds[2 * i] -= firstRow;
            }
            source = ResampleHorizontal(image, width, firstRow, lastRow - firstRow, xBounds, xWeights, xSize);
        }
        return vertical ? ResampleVertical(source, height, yBounds, yWeights, ySize) : source;
    }

    private static double Filter(double x)
    {
        x = Math.Abs(x);
        if (x < 1.0) return ((BicubicA + 2.0) * x - (BicubicA + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * BicubicA;
        return 0.0;
    }

    /// <summary>Pillow's precompute_coeffs + normalize_coeffs_8bpc for a box [0, inSize).</summary>
    private static (int[] Bounds, int[] Weights, int KernelSize) Coefficients(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = BicubicSupport * filterScale;
        int kernelSize = (int)Math.Ceiling(support) * 2 + 1;
        var bounds = new int[outSize * 2];
        var weights = new int[outSize * kernelSize];
        var k = new double[kernelSize];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;
            double ww = 0.0, ss = 1.0 / filterScale;
            int xmin = (int)(center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            Array.Clear(k);
            for (int x = 0; x < xmax; x++)
            {
                double w = Filter((x + xmin - center + 0.5) * ss);
                k[x] = w;
                ww += w;
            }
            for (int x = 0; x < xmax; x++)
                if (ww != 0.0) k[x] /= ww;
            for (int x = 0; x < kernelSize; x++)
            {
                double w = x < xmax ? k[x] : 0.0;
                weights[xx * kernelSize + x] = w < 0 ? (int)(-0.5 + w * (1 << PrecisionBits)) : (int)(0.5 + w * (1 << PrecisionBits));
            }
            bounds[2 * xx] = xmin;
            bounds[2 * xx + 1] = xmax;
        }
        return (bounds, weights, kernelSize);
    }

    private static byte Clip8(int v)
    {
        v >>= PrecisionBits;
        return v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
    }

    private static RgbImage ResampleHorizontal(RgbImage image, int width, int firstRow, int rows, int[] bounds, int[] weights, int kernelSize)
    {
        var src = image.Pixels;
        var dst = new byte[width * rows * 3];
        int inStride = image.Width * 3;
        Parallel.For(0, rows, y =>
        {
            int inRow = (y + firstRow) * inStride, outRow = y * width * 3;
            for (int xx = 0; xx < width; xx++)
            {
                int xmin = bounds[2 * xx], xmax = bounds[2 * xx + 1], kOffset = xx * kernelSize;
                int r = 1 << (PrecisionBits - 1), g = r, b = r;
                for (int x = 0; x < xmax; x++)
                {
                    int w = weights[kOffset + x], p = inRow + (x + xmin) * 3;
                    r += src[p] * w;
                    g += src[p + 1] * w;
                    b += src[p + 2] * w;
                }
                int o = outRow + xx * 3;
                dst[o] = Clip8(r);
                dst[o + 1] = Clip8(g);
                dst[o + 2] = Clip8(b);
            }
        });
        return new RgbImage(width, rows, dst);
    }

    private static RgbImage ResampleVertical(RgbImage image, int height, int[] bounds, int[] weights, int kernelSize)
    {
        var src = image.Pixels;
        int rowBytes = image.Width * 3;
        var dst = new byte[rowBytes * height];
        Parallel.For(0, height, yy =>
        {
            int ymin = bounds[2 * yy], ymax = bounds[2 * yy + 1], kOffset = yy * kernelSize, outRow = yy * rowBytes;
            for (int i = 0; i < rowBytes; i++)
            {
                int acc = 1 << (PrecisionBits - 1);
                for (int y = 0; y < ymax; y++)
                    acc += src[(y + ymin) * rowBytes + i] * weights[kOffset + y];
                dst[outRow + i] = Clip8(acc);
            }
        });
        return new RgbImage(image.Width, height, dst);
    }
}
