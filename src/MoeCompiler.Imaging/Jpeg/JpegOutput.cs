namespace MoeCompiler.Imaging.Jpeg;

internal sealed partial class JpegDecoder
{
    private enum ColorSpace { Gray, YCbCr, Rgb, Cmyk, Ycck }

    // libjpeg's jdcolor.c tables (16-bit fixed point, rounding folded into the red/blue and Cb-green entries).
    private static readonly int[] CrToR = new int[256], CbToB = new int[256], CrToG = new int[256], CbToG = new int[256];

    static JpegDecoder()
    {
        const int scaleBits = 16, half = 1 << (scaleBits - 1);
        static int Fix(double x) => (int)(x * (1 << scaleBits) + 0.5);
        for (int i = 0; i < 256; i++)
        {
            int x = i - 128;
            CrToR[i] = (Fix(1.40200) * x + half) >> scaleBits;
            CbToB[i] = (Fix(1.77200) * x + half) >> scaleBits;
            CrToG[i] = -Fix(0.71414) * x;
            CbToG[i] = -Fix(0.34414) * x + half;
        }
    }

    private ColorSpace DetectColorSpace()
    {
        switch (_components.Length)
        {
            case 1:
                return ColorSpace.Gray;
            case 3:
                if (_sawJfif) return ColorSpace.YCbCr;
                if (_sawAdobe) return _adobeTransform == 0 ? ColorSpace.Rgb : ColorSpace.YCbCr;
                return _components[0].Id == 'R' && _components[1].Id == 'G' && _components[2].Id == 'B' ? ColorSpace.Rgb : ColorSpace.YCbCr;
            default:
                return _sawAdobe && _adobeTransform != 0 ? ColorSpace.Ycck : ColorSpace.Cmyk;
        }
    }

    private RgbImage Output()
    {
        if (!_frameSeen) throw new ImageDecodingException("JPEG has no frame header");
        foreach (var c in _components)
            if (c.Quant is null) throw new ImageDecodingException($"JPEG component {c.Id} never appears in a scan");

        var planes = new byte[_components.Length][];
        for (int i = 0; i < _components.Length; i++)
            planes[i] = _components[i].Plane ?? InverseTransform(_components[i], _progressive, _options.Parallelism);

        int width = _width, height = _height, n = _components.Length;
        var colorSpace = DetectColorSpace();
        var pixels = GC.AllocateUninitializedArray<byte>(width * height * 3);
        Parallel.For(0, (height + 15) / 16, _options.Parallelism, band =>
        {
            var buffers = new byte[n][];
            var columnSums = new short[width + 16];
            var rows = new (byte[] Array, int Offset)[n];
            for (int i = 0; i < n; i++) buffers[i] = new byte[width + 32];
            int yEnd = Math.Min(height, band * 16 + 16);
            for (int y = band * 16; y < yEnd; y++)
            {
                for (int i = 0; i < n; i++) rows[i] = UpsampleRow(_components[i], planes[i], y, buffers[i], columnSums);
                ConvertRow(colorSpace, rows, pixels.AsSpan(y * width * 3, width * 3), width);
            }
        });
        return new RgbImage(width, height, pixels);
    }

    private static byte[] InverseTransform(Component c, bool zigZagOrder, ParallelOptions parallelism)
    {
        int stride = c.BlocksPerLine * 8;
        var plane = GC.AllocateUninitializedArray<byte>(stride * c.HeightInBlocks * 8);
        var coefficients = c.Coefficients;
        Parallel.For(0, c.HeightInBlocks, parallelism, () => new short[64], (by, _, natural) =>
        {
            for (int bx = 0; bx < c.WidthInBlocks; bx++)
            {
                var block = coefficients.AsSpan((by * c.BlocksPerLine + bx) * 64, 64);
                if (zigZagOrder)
                {
                    for (int k = 0; k < 64; k++) natural[ZigZag[k]] = block[k];
                    block = natural;
                }
                InverseTransformBlock(block, c, plane.AsSpan(by * 8 * stride + bx * 8), stride);
            }
            return natural;
        }, _ => { });
        return plane;
    }

    private static void InverseTransformBlock(ReadOnlySpan<short> block, Component c, Span<byte> target, int stride)
    {
        if (JpegIdctAvx2.IsSupported) JpegIdctAvx2.Transform(block, c.WideQuant, target, stride);
        else JpegIdct.Transform(block, c.Quant!, target, stride);
    }

    /// <summary>
    /// One full-resolution row of a component, upsampled as libjpeg-turbo's jdsample.c does by default: the plane
    /// row itself at full resolution, otherwise written into <paramref name="output"/>.
    /// </summary>
    private (byte[] Array, int Offset) UpsampleRow(Component c, byte[] plane, int y, byte[] output, short[] columnSums)
    {
        int stride = c.BlocksPerLine * 8, hx = _maxH / c.H, vy = _maxV / c.V, dw = c.SampleWidth, dh = c.SampleHeight;
        int inRow = y / vy;
        var row0 = plane.AsSpan(inRow * stride, stride);
        if (hx == 1 && vy == 1) return (plane, inRow * stride);
        if (hx == 2 && vy == 2 && dw > 2 && JpegSimd.IsSupported)
        {
            int neighbour = Math.Clamp((y & 1) == 0 ? inRow - 1 : inRow + 1, 0, dh - 1);
            JpegSimd.UpsampleH2V2Fancy(row0, plane.AsSpan(neighbour * stride, stride), dw, output, columnSums);
            return (output, 0);
        }
        UpsampleRowScalar(c, plane, y, output);
        return (output, 0);
    }

    private void UpsampleRowScalar(Component c, byte[] plane, int y, byte[] output)
    {
        int stride = c.BlocksPerLine * 8, hx = _maxH / c.H, vy = _maxV / c.V, dw = c.SampleWidth, dh = c.SampleHeight;
        int inRow = y / vy;
        var row0 = plane.AsSpan(inRow * stride, stride);
        if (hx == 1 && vy == 1)
        {
            row0[.._width].CopyTo(output);
            return;
        }
        if (hx == 2 && vy == 1 && dw > 2)
        {
            output[0] = row0[0];
            output[1] = (byte)((row0[0] * 3 + row0[1] + 2) >> 2);
            for (int x = 1; x < dw - 1; x++)
            {
                int v = row0[x] * 3;
                output[2 * x] = (byte)((v + row0[x - 1] + 1) >> 2);
                output[2 * x + 1] = (byte)((v + row0[x + 1] + 2) >> 2);
            }
            output[2 * dw - 2] = (byte)((row0[dw - 1] * 3 + row0[dw - 2] + 1) >> 2);
            output[2 * dw - 1] = row0[dw - 1];
            return;
        }
        if (hx == 1 && vy == 2)
        {
            bool upper = (y & 1) == 0;
            int neighbour = Math.Clamp(upper ? inRow - 1 : inRow + 1, 0, dh - 1);
            var row1 = plane.AsSpan(neighbour * stride, stride);
            int bias = upper ? 1 : 2;
            for (int x = 0; x < _width; x++) output[x] = (byte)((row0[x] * 3 + row1[x] + bias) >> 2);
            return;
        }
        if (hx == 2 && vy == 2 && dw > 2)
        {
            bool upper = (y & 1) == 0;
            int neighbour = Math.Clamp(upper ? inRow - 1 : inRow + 1, 0, dh - 1);
            var row1 = plane.AsSpan(neighbour * stride, stride);
            int last = row0[0] * 3 + row1[0], current = last, next = row0[1] * 3 + row1[1];
            output[0] = (byte)((current * 4 + 8) >> 4);
            output[1] = (byte)((current * 3 + next + 7) >> 4);
            for (int x = 1; x < dw - 1; x++)
            {
                last = current;
                current = next;
                next = row0[x + 1] * 3 + row1[x + 1];
                output[2 * x] = (byte)((current * 3 + last + 8) >> 4);
                output[2 * x + 1] = (byte)((current * 3 + next + 7) >> 4);
            }
            last = current;
            current = next;
            output[2 * dw - 2] = (byte)((current * 3 + last + 8) >> 4);
            output[2 * dw - 1] = (byte)((current * 4 + 7) >> 4);
            return;
        }
        // Plain replication (libjpeg's int_upsample / h2v1_upsample / h2v2_upsample).
        for (int x = 0; x < _width; x++) output[x] = row0[x / hx];
    }

    private static void ConvertRow(ColorSpace space, (byte[] Array, int Offset)[] rows, Span<byte> dst, int width)
    {
        if (space == ColorSpace.YCbCr && JpegSimd.IsSupported)
        {
            JpegSimd.YCbCrToRgb(rows[0].Array.AsSpan(rows[0].Offset, width), rows[1].Array.AsSpan(rows[1].Offset, width),
                rows[2].Array.AsSpan(rows[2].Offset, width), dst, width);
            return;
        }
        ConvertRowScalar(space, rows, dst, width);
    }

    private static void ConvertRowScalar(ColorSpace space, (byte[] Array, int Offset)[] rows, Span<byte> dst, int width)
    {
        switch (space)
        {
            case ColorSpace.Gray:
            {
                var g = rows[0].Array.AsSpan(rows[0].Offset);
                for (int x = 0; x < width; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = g[x];
                break;
            }
            case ColorSpace.Rgb:
            {
                ReadOnlySpan<byte> r = Row(rows, 0), g = Row(rows, 1), b = Row(rows, 2);
                for (int x = 0; x < width; x++)
                {
                    dst[3 * x] = r[x];
                    dst[3 * x + 1] = g[x];
                    dst[3 * x + 2] = b[x];
                }
                break;
            }
            case ColorSpace.YCbCr:
            {
                ReadOnlySpan<byte> yy = Row(rows, 0), cb = Row(rows, 1), cr = Row(rows, 2);
                for (int x = 0; x < width; x++)
                {
                    int luma = yy[x], blue = cb[x], red = cr[x];
                    dst[3 * x] = Clamp(luma + CrToR[red]);
                    dst[3 * x + 1] = Clamp(luma + ((CbToG[blue] + CrToG[red]) >> 16));
                    dst[3 * x + 2] = Clamp(luma + CbToB[blue]);
                }
                break;
            }
            default:
            {
                ReadOnlySpan<byte> c0 = Row(rows, 0), c1 = Row(rows, 1), c2 = Row(rows, 2), k = Row(rows, 3);
                bool ycck = space == ColorSpace.Ycck;
                for (int x = 0; x < width; x++)
                {
                    int c = c0[x], m = c1[x], ye = c2[x];
                    if (ycck)
                    {
                        int luma = c, blue = m, red = ye;
                        c = Clamp(255 - (luma + CrToR[red]));
                        m = Clamp(255 - (luma + ((CbToG[blue] + CrToG[red]) >> 16)));
                        ye = Clamp(255 - (luma + CbToB[blue]));
                    }
                    // Pillow reads Adobe-style inverted CMYK ("CMYK;I"), then convert("RGB") computes
                    // nk - c*nk/255 with its MULDIV255 rounding, where nk = 255 - K.
                    int nk = k[x];
                    dst[3 * x] = Clamp(nk - MulDiv255(255 - c, nk));
                    dst[3 * x + 1] = Clamp(nk - MulDiv255(255 - m, nk));
                    dst[3 * x + 2] = Clamp(nk - MulDiv255(255 - ye, nk));
                }
                break;
            }
        }
    }

    private static ReadOnlySpan<byte> Row((byte[] Array, int Offset)[] rows, int i) => rows[i].Array.AsSpan(rows[i].Offset);

    private static int MulDiv255(int a, int b)
    {
        int t = a * b + 128;
        return ((t >> 8) + t) >> 8;
    }

    private static byte Clamp(int v) => v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
}
