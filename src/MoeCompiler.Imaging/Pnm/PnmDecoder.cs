namespace MoeCompiler.Imaging.Pnm;

/// <summary>
/// Netpbm P2/P3 (plain) and P5/P6 (binary) with maxval 1..65535. Samples are rescaled exactly as Pillow 9.4's
/// PpmDecoder does: <c>round(v / maxval * 255)</c> (round half to even); a grey image with maxval above 255 is
/// Pillow mode "I" scaled to 65535, which <c>convert("RGB")</c> then clips to 255.
/// </summary>
internal static class PnmDecoder
{
    public static RgbImage Decode(ReadOnlySpan<byte> data, ImageDecodeOptions options)
    {
        char kind = (char)data[1];
        bool plain = kind is '2' or '3';
        int channels = kind is '3' or '6' ? 3 : 1;
        int pos = 2;
        long width = ReadHeaderNumber(data, ref pos, "width");
        long height = ReadHeaderNumber(data, ref pos, "height");
        long maxval = ReadHeaderNumber(data, ref pos, "maxval");
        if (maxval is < 1 or > 65535) throw new ImageDecodingException($"PNM maxval {maxval} is outside 1..65535");
        ImageDecoder.CheckDimensions(width, height, options, "PNM");
        int w = (int)width, h = (int)height;
        if (!plain)
        {
            if (pos >= data.Length || !IsSpace(data[pos])) throw new ImageDecodingException("PNM header is not followed by whitespace");
            pos++;
        }
        bool greyAsInt = channels == 1 && maxval > 255;
        int outMax = greyAsInt ? 65535 : 255;
        var lookup = new byte[maxval + 1];
        for (int v = 0; v <= maxval; v++)
        {
            double scaled = Math.Round(v / (double)maxval * outMax, MidpointRounding.ToEven);
            lookup[v] = (byte)Math.Min(255, scaled);
        }
        long samples = (long)w * h * channels;
        int bytesPerSample = maxval > 255 ? 2 : 1;
        if (!plain && pos + samples * bytesPerSample > data.Length)
            throw new ImageDecodingException($"PNM is truncated (needs {samples * bytesPerSample} sample bytes, has {data.Length - pos})");
        var pixels = new byte[w * h * 3];
        for (long i = 0; i < samples; i++)
        {
            int v;
            if (plain)
            {
                long parsed = ReadPlainSample(data, ref pos);
                if (parsed > maxval) throw new ImageDecodingException($"PNM sample {parsed} exceeds maxval {maxval}");
                v = (int)parsed;
            }
            else if (bytesPerSample == 1)
            {
                v = data[(int)(pos + i)];
            }
            else
            {
                int at = (int)(pos + 2 * i);
                v = (data[at] << 8) | data[at + 1];
            }
            if (v > maxval) v = (int)maxval; // Pillow's binary decoder clips with min(out_max, ...)
            byte b = lookup[v];
            if (channels == 3) pixels[i] = b;
            else pixels[3 * i] = pixels[3 * i + 1] = pixels[3 * i + 2] = b;
        }
        return new RgbImage(w, h, pixels);
    }

    private static bool IsSpace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r' or 0x0B or 0x0C;

    private static void SkipSpaceAndComments(ReadOnlySpan<byte> data, ref int pos)
    {
        while (pos < data.Length)
        {
            if (IsSpace(data[pos])) pos++;
            else if (data[pos] == (byte)'#')
                while (pos < data.Length && data[pos] != (byte)'\n' && data[pos] != (byte)'\r') pos++;
            else break;
        }
    }

    private static long ReadHeaderNumber(ReadOnlySpan<byte> data, ref int pos, string what)
    {
        SkipSpaceAndComments(data, ref pos);
        long value = 0;
        int digits = 0;
        while (pos < data.Length && data[pos] is >= (byte)'0' and <= (byte)'9')
        {
            if (++digits > 10) throw new ImageDecodingException($"PNM {what} is too long a number");
            value = value * 10 + (data[pos++] - '0');
        }
        if (digits == 0) throw new ImageDecodingException($"PNM header has no valid {what}");
        return value;
    }

    private static long ReadPlainSample(ReadOnlySpan<byte> data, ref int pos)
    {
        SkipSpaceAndComments(data, ref pos);
        if (pos >= data.Length) throw new ImageDecodingException("PNM is truncated (fewer samples than the header declares)");
        long value = 0;
        int digits = 0;
        while (pos < data.Length && data[pos] is >= (byte)'0' and <= (byte)'9')
        {
            if (++digits > 6) throw new ImageDecodingException("PNM sample is too long a number");
            value = value * 10 + (data[pos++] - '0');
        }
        if (digits == 0) throw new ImageDecodingException($"PNM has an invalid character 0x{data[pos]:X2} among its samples");
        return value;
    }
}
