using System.Buffers.Binary;
using MoeCompiler.Imaging.Bmp;
using MoeCompiler.Imaging.Jpeg;
using MoeCompiler.Imaging.Png;
using MoeCompiler.Imaging.Pnm;

namespace MoeCompiler.Imaging;

/// <summary>
/// Decodes PNG, JPEG, BMP and PPM/PGM to RGB with the pixel values Pillow's <c>Image.open(f).convert("RGB")</c>
/// gives (alpha is dropped, not composited; 16-bit samples keep their high byte, except 16-bit grey which Pillow
/// clips to 255). The format is sniffed from the bytes, never from a file name.
/// </summary>
public static class ImageDecoder
{
    /// <summary>The largest image file read: far above any photograph, and the decoders' pixel budget applies anyway.</summary>
    public const long MaxFileBytes = 256L << 20;

    public static ImageFormat DetectFormat(ReadOnlySpan<byte> data)
    {
        if (data.Length >= 8 && data[..8].SequenceEqual(PngDecoder.Signature)) return ImageFormat.Png;
        if (data.Length >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return ImageFormat.Jpeg;
        if (data.Length >= 2 && data[0] == (byte)'B' && data[1] == (byte)'M') return ImageFormat.Bmp;
        if (data.Length >= 2 && data[0] == (byte)'P' && data[1] is (byte)'2' or (byte)'3' or (byte)'5' or (byte)'6')
            return ImageFormat.Pnm;
        return ImageFormat.Unknown;
    }

    public static RgbImage Decode(ReadOnlySpan<byte> data, ImageDecodeOptions? options = null)
        => DecodeCore(data, options ?? ImageDecodeOptions.Default);

    public static RgbImage DecodeFile(string path, ImageDecodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] bytes = MoeCompiler.IO.RegularFile.ReadAllBytes(path, MaxFileBytes, (problem, inner) => new ImageDecodingException(problem, path, inner));
        try
        {
            return DecodeCore(bytes, options ?? ImageDecodeOptions.Default);
        }
        catch (ImageDecodingException e) when (e.FileName is null)
        {
            throw new ImageDecodingException(e.Problem, path, e.InnerException);
        }
    }

    private static RgbImage DecodeCore(ReadOnlySpan<byte> data, ImageDecodeOptions options)
    {
        if (options.MaxPixels <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), "MaxPixels must be positive.");
        if (data.IsEmpty) throw new ImageDecodingException("the data is empty");
        try
        {
            return DetectFormat(data) switch
            {
                ImageFormat.Png => PngDecoder.Decode(data, options),
                ImageFormat.Jpeg => JpegDecoder.Decode(data, options),
                ImageFormat.Bmp => BmpDecoder.Decode(data, options),
                ImageFormat.Pnm => PnmDecoder.Decode(data, options),
                _ => throw new ImageDecodingException(
                    $"unrecognised image format (first bytes {Convert.ToHexString(data[..Math.Min(8, data.Length)])}); supported: PNG, JPEG, BMP, PPM/PGM"),
            };
        }
        catch (InvalidDataException e)
        {
            throw new ImageDecodingException($"corrupt compressed data ({e.Message})", null, e);
        }
        catch (IOException e)
        {
            // ZLibException (a zlib header the decoder refuses, such as a preset dictionary) is an IOException
            throw new ImageDecodingException($"corrupt compressed data ({e.Message})", null, e);
        }
        catch (OverflowException e)
        {
            throw new ImageDecodingException("declared sizes overflow", null, e);
        }
    }

    /// <summary>Refuses dimensions that are non-positive or exceed the configured pixel budget, before allocation.</summary>
    internal static void CheckDimensions(long width, long height, ImageDecodeOptions options, string format)
    {
        if (width <= 0 || height <= 0)
            throw new ImageDecodingException($"{format} declares invalid dimensions {width}x{height}");
        if (width > int.MaxValue / 4 || height > int.MaxValue / 4 || width * height > options.MaxPixels)
            throw new ImageDecodingException(
                $"{format} declares {width}x{height} = {width * height} pixels, above the limit of {options.MaxPixels} (ImageDecodeOptions.MaxPixels)");
        if (width * height * 3 > Array.MaxLength)
            throw new ImageDecodingException($"{format} declares {width}x{height}, too large for one buffer");
    }

    internal static uint ReadUInt32BigEndian(ReadOnlySpan<byte> data, int offset) => BinaryPrimitives.ReadUInt32BigEndian(data[offset..]);
}
