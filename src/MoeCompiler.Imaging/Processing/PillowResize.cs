using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Imaging.Processing;

/// <summary>
/// Bit-exact re-implementation of Pillow's <c>Image.resize(size, Image.BICUBIC)</c> on 8-bit RGB (ImagingResample:
/// separable passes, the filter support widened by the downscale factor, weights normalised in double precision,
/// then rounded to 22-bit fixed point; each pass rounds and clips to 8 bits). Horizontal pass first, over only the
/// rows the vertical pass reads; a pass is skipped when its size is unchanged, as Pillow does. Integer sums are
/// exact, so the vectorised loops (any summation order) give Pillow's bytes.
/// </summary>
public static class PillowResize
{
    private const int PrecisionBits = 32 - 8 - 2;
    private const double BicubicA = -0.5;
    private const double BicubicSupport = 2.0;

    public static RgbImage Bicubic(RgbImage image, int width, int height, int maxDegreeOfParallelism = -1)
    {
        ArgumentNullException.ThrowIfNull(image);
        return Resample(new Canvas(image, image.Width, image.Height, 0, 0, default), width, height, maxDegreeOfParallelism);
    }

    /// <summary>
    /// Resizes <paramref name="image"/> as if it were first pasted at (left, top) on a canvasWidth×canvasHeight
    /// canvas of <paramref name="background"/> (LLaVA's expand2square), without building that canvas.
    /// </summary>
    public static RgbImage BicubicOnCanvas(RgbImage image, int canvasWidth, int canvasHeight, int left, int top,
        (byte R, byte G, byte B) background, int width, int height, int maxDegreeOfParallelism = -1)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (left < 0 || top < 0 || left + image.Width > canvasWidth || top + image.Height > canvasHeight)
            throw new ArgumentException("The picture must lie inside the canvas.");
        return Resample(new Canvas(image, canvasWidth, canvasHeight, left, top, background), width, height, maxDegreeOfParallelism);
    }

    /// <summary>A picture placed on a uniform background; rows wholly outside the picture are background rows.</summary>
    private readonly record struct Canvas(RgbImage Image, int Width, int Height, int Left, int Top, (byte R, byte G, byte B) Background)
    {
        public bool IsBackgroundRow(int y) => y < Top || y >= Top + Image.Height;

        public bool IsPlain => Width == Image.Width && Height == Image.Height;

        /// <summary>Writes canvas row y, interleaved RGB.</summary>
        public void ReadRow(int y, Span<byte> row)
        {
            if (IsPlain)
            {
                Image.Pixels.AsSpan(y * Width * 3, Width * 3).CopyTo(row);
                return;
            }
            for (int x = 0; x < Width; x++)
            {
                row[3 * x] = Background.R;
                row[3 * x + 1] = Background.G;
                row[3 * x + 2] = Background.B;
            }
            if (!IsBackgroundRow(y))
                Image.Pixels.AsSpan((y - Top) * Image.Width * 3, Image.Width * 3).CopyTo(row[(Left * 3)..]);
        }
    }

    private static RgbImage Resample(Canvas canvas, int width, int height, int maxDegreeOfParallelism)
    {
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), $"Target size must be positive, got {width}x{height}.");
        var parallelism = new ParallelOptions { MaxDegreeOfParallelism = maxDegreeOfParallelism };
        bool horizontal = width != canvas.Width, vertical = height != canvas.Height;
        if (!horizontal && !vertical)
        {
            var copy = new byte[width * height * 3];
            for (int y = 0; y < height; y++) canvas.ReadRow(y, copy.AsSpan(y * width * 3, width * 3));
            return new RgbImage(width, height, copy);
        }

        var xKernel = Coefficients(canvas.Width, width);
        var yKernel = Coefficients(canvas.Height, height);
        int firstRow = 0, rows = canvas.Height;
        if (vertical)
        {
            firstRow = yKernel.Bounds[0];
            rows = yKernel.Bounds[(height - 1) * 2] + yKernel.Bounds[(height - 1) * 2 + 1] - firstRow;
            for (int i = 0; i < height; i++) yKernel.Bounds[2 * i] -= firstRow;
        }

        byte[] stage;
        int stageWidth;
        if (horizontal)
        {
            stage = ResampleHorizontal(canvas, firstRow, rows, xKernel, width, parallelism);
            stageWidth = width;
        }
        else
        {
            stage = new byte[canvas.Width * rows * 3];
            for (int r = 0; r < rows; r++) canvas.ReadRow(firstRow + r, stage.AsSpan(r * canvas.Width * 3, canvas.Width * 3));
            stageWidth = canvas.Width;
        }
        if (!vertical) return new RgbImage(stageWidth, rows, stage);
        return new RgbImage(stageWidth, height, ResampleVertical(stage, stageWidth, height, yKernel, parallelism));
    }

    private static double Filter(double x)
    {
        x = Math.Abs(x);
        if (x < 1.0) return ((BicubicA + 2.0) * x - (BicubicA + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * BicubicA;
        return 0.0;
    }

    /// <summary>Fixed-point weights per output sample; <see cref="Stride"/> is the kernel size rounded up to 8 (zero-padded).</summary>
    private sealed record Kernel(int[] Bounds, int[] Weights, int Stride);

    /// <summary>Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box [0, inSize).</summary>
    private static Kernel Coefficients(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = BicubicSupport * filterScale;
        int kernelSize = (int)Math.Ceiling(support) * 2 + 1;
        int stride = (kernelSize + 7) & ~7;
        var bounds = new int[outSize * 2];
        var weights = new int[outSize * stride];
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
            for (int x = 0; x < xmax; x++)
            {
                double w = k[x];
                weights[xx * stride + x] = w < 0 ? (int)(-0.5 + w * (1 << PrecisionBits)) : (int)(0.5 + w * (1 << PrecisionBits));
            }
            bounds[2 * xx] = xmin;
            bounds[2 * xx + 1] = xmax;
        }
        return new Kernel(bounds, weights, stride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte Clip8(int v)
    {
        v >>= PrecisionBits;
        return v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
    }

    private static byte[] ResampleHorizontal(Canvas canvas, int firstRow, int rows, Kernel kernel, int width, ParallelOptions parallelism)
    {
        var dst = new byte[width * rows * 3];
        int inWidth = canvas.Width, rowBytes = width * 3;
        // Rows wholly in the background are all the same: resample one and copy it.
        byte[]? backgroundRow = null;
        if (!canvas.IsPlain)
        {
            backgroundRow = new byte[rowBytes];
            var planes = new int[3 * (inWidth + kernel.Stride)];
            var source = new byte[inWidth * 3];
            canvas.ReadRow(canvas.Top > 0 ? 0 : canvas.Height - 1, source);
            HorizontalRow(source, planes, inWidth, kernel, backgroundRow, width);
        }
        Parallel.For(0, rows, parallelism,
            () => (Planes: new int[3 * (inWidth + kernel.Stride)], Source: new byte[inWidth * 3]),
            (r, _, scratch) =>
            {
                int y = firstRow + r;
                var output = dst.AsSpan(r * rowBytes, rowBytes);
                if (backgroundRow is not null && canvas.IsBackgroundRow(y))
                {
                    backgroundRow.CopyTo(output);
                    return scratch;
                }
                canvas.ReadRow(y, scratch.Source);
                HorizontalRow(scratch.Source, scratch.Planes, inWidth, kernel, output, width);
                return scratch;
            },
            _ => { });
        return dst;
    }

    /// <summary>One row: de-interleave into three int planes, then one dot product per output sample and channel.</summary>
    private static void HorizontalRow(ReadOnlySpan<byte> source, int[] planes, int inWidth, Kernel kernel, Span<byte> output, int width)
    {
        int planeStride = inWidth + kernel.Stride; // zero tail: vector loads past xmax meet zero weights anyway
        for (int x = 0; x < inWidth; x++)
        {
            planes[x] = source[3 * x];
            planes[planeStride + x] = source[3 * x + 1];
            planes[2 * planeStride + x] = source[3 * x + 2];
        }
        var weights = kernel.Weights;
        var bounds = kernel.Bounds;
        bool simd = Vector256.IsHardwareAccelerated;
        for (int xx = 0; xx < width; xx++)
        {
            int xmin = bounds[2 * xx], xmax = bounds[2 * xx + 1], k0 = xx * kernel.Stride;
            for (int c = 0; c < 3; c++)
            {
                int p0 = c * planeStride + xmin;
                int sum;
                if (simd)
                {
                    var acc = Vector256<int>.Zero;
                    for (int t = 0; t < xmax; t += 8)
                        acc += Vector256.LoadUnsafe(ref weights[k0 + t]) * Vector256.LoadUnsafe(ref planes[p0 + t]);
                    sum = Vector256.Sum(acc);
                }
                else
                {
                    sum = 0;
                    for (int t = 0; t < xmax; t++) sum += weights[k0 + t] * planes[p0 + t];
                }
                output[3 * xx + c] = Clip8(sum + (1 << (PrecisionBits - 1)));
            }
        }
    }

    private static byte[] ResampleVertical(byte[] src, int width, int height, Kernel kernel, ParallelOptions parallelism)
    {
        int rowBytes = width * 3;
        var dst = new byte[rowBytes * height];
        var weights = kernel.Weights;
        var bounds = kernel.Bounds;
        bool simd = Avx2.IsSupported;
        Parallel.For(0, height, parallelism, yy =>
        {
            int ymin = bounds[2 * yy], ymax = bounds[2 * yy + 1], k0 = yy * kernel.Stride, outRow = yy * rowBytes;
            int i = 0;
            if (simd)
            {
                var half = Vector256.Create(1 << (PrecisionBits - 1));
                for (; i + 8 <= rowBytes; i += 8)
                {
                    var acc = half;
                    for (int t = 0; t < ymax; t++)
                    {
                        ulong eight = Unsafe.ReadUnaligned<ulong>(ref src[(ymin + t) * rowBytes + i]);
                        acc += Avx2.ConvertToVector256Int32(Vector128.CreateScalar(eight).AsByte()) * Vector256.Create(weights[k0 + t]);
                    }
                    acc >>= PrecisionBits;
                    var clamped = Vector256.Min(Vector256.Max(acc, Vector256<int>.Zero), Vector256.Create(255));
                    for (int j = 0; j < 8; j++) dst[outRow + i + j] = (byte)clamped.GetElement(j);
                }
            }
            for (; i < rowBytes; i++)
            {
                int acc = 1 << (PrecisionBits - 1);
                for (int t = 0; t < ymax; t++)
                    acc += src[(ymin + t) * rowBytes + i] * weights[k0 + t];
                dst[outRow + i] = Clip8(acc);
            }
        });
        return dst;
    }
}
