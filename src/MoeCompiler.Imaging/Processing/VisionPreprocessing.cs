using MoeCompiler.Imaging.Processing;

namespace MoeCompiler.Imaging;

/// <summary>
/// The reference's image pipeline (LLaVA <c>image_aspect_ratio="pad"</c> + the tower's HF image processor):
/// pad to a square filled with int(mean·255), Pillow bicubic resize (CLIP: shortest edge to ImageSize then centre
/// crop; SigLIP: straight to ImageSize×ImageSize), ×1/255 and (x − mean)/std in float32, CHW layout.
/// </summary>
public sealed record VisionPreprocessing(string Tower, int ImageSize, float[] Mean, float[] Std, bool PadToSquare = true)
{
    public static VisionPreprocessing Clip(int imageSize = 336) =>
        new("clip", imageSize, [0.48145466f, 0.4578275f, 0.40821073f], [0.26862954f, 0.26130258f, 0.27577711f]);

    public static VisionPreprocessing Siglip(int imageSize = 384) =>
        new("siglip", imageSize, [0.5f, 0.5f, 0.5f], [0.5f, 0.5f, 0.5f]);

    /// <summary>Threads the resize may use (-1: all cores).</summary>
    public int MaxDegreeOfParallelism { get; init; } = -1;

    private bool IsSiglip => Tower.Equals("siglip", StringComparison.OrdinalIgnoreCase);

    /// <summary>The padding colour: <c>tuple(int(x*255) for x in image_mean)</c>, computed in double as Python does.</summary>
    public (byte R, byte G, byte B) PadColor => ((byte)(int)((double)Mean[0] * 255), (byte)(int)((double)Mean[1] * 255), (byte)(int)((double)Mean[2] * 255));

    /// <summary>The 8-bit picture the tower sees, before scaling and normalisation (ImageSize×ImageSize).</summary>
    public RgbImage Prepare(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        Validate();
        // The padded canvas is never built: the resize reads the picture through it (same bytes, less memory).
        int canvasWidth = image.Width, canvasHeight = image.Height;
        if (PadToSquare) canvasWidth = canvasHeight = Math.Max(image.Width, image.Height);
        int left = (canvasWidth - image.Width) / 2, top = (canvasHeight - image.Height) / 2;
        if (IsSiglip) return Resize(image, canvasWidth, canvasHeight, left, top, ImageSize, ImageSize);

        // CLIPImageProcessor: resize the shortest edge to ImageSize, the other to int(ImageSize * long / short).
        int newW, newH;
        if (canvasWidth <= canvasHeight)
        {
            newW = ImageSize;
            newH = (int)((long)ImageSize * canvasHeight / canvasWidth);
        }
        else
        {
            newH = ImageSize;
            newW = (int)((long)ImageSize * canvasWidth / canvasHeight);
        }
        return CenterCrop(Resize(image, canvasWidth, canvasHeight, left, top, newW, newH), ImageSize, ImageSize);
    }

    private RgbImage Resize(RgbImage image, int canvasWidth, int canvasHeight, int left, int top, int width, int height) =>
        canvasWidth == image.Width && canvasHeight == image.Height
            ? PillowResize.Bicubic(image, width, height, MaxDegreeOfParallelism)
            : PillowResize.BicubicOnCanvas(image, canvasWidth, canvasHeight, left, top, PadColor, width, height, MaxDegreeOfParallelism);

    /// <summary>Preprocesses to a CHW float tensor [3, ImageSize, ImageSize].</summary>
    public float[] Apply(RgbImage image)
    {
        var prepared = Prepare(image);
        int plane = ImageSize * ImageSize;
        var result = new float[3 * plane];
        var pixels = prepared.Pixels;
        for (int c = 0; c < 3; c++)
        {
            float mean = Mean[c], std = Std[c];
            for (int i = 0; i < plane; i++)
            {
                // rescale: float64 multiply then cast to float32; normalize: float32 (x - mean) / std.
                float scaled = (float)(pixels[3 * i + c] * (1.0 / 255.0));
                result[c * plane + i] = (scaled - mean) / std;
            }
        }
        return result;
    }

    private void Validate()
    {
        if (ImageSize <= 0) throw new ArgumentOutOfRangeException(nameof(ImageSize), "ImageSize must be positive.");
        if (Mean is not { Length: 3 } || Std is not { Length: 3 }) throw new ArgumentException("Mean and Std need 3 values each.");
        if (!IsSiglip && !Tower.Equals("clip", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"Unknown vision tower '{Tower}' (clip or siglip).");
    }

    /// <summary>LLaVA's expand2square: the picture pasted at ((s−W)/2, (s−H)/2) on an s×s canvas, s = max(W, H).</summary>
    public static RgbImage ExpandToSquare(RgbImage image, (byte R, byte G, byte B) background)
    {
        int w = image.Width, h = image.Height;
        if (w == h) return image;
        int s = Math.Max(w, h), left = (s - w) / 2, top = (s - h) / 2;
        var canvas = RgbImage.Filled(s, s, background.R, background.G, background.B);
        for (int y = 0; y < h; y++)
            image.Pixels.AsSpan(y * w * 3, w * 3).CopyTo(canvas.Pixels.AsSpan(((y + top) * s + left) * 3));
        return canvas;
    }

    /// <summary>transformers' center_crop: top = (H − h) // 2, left = (W − w) // 2 (crop sizes not above the image).</summary>
    public static RgbImage CenterCrop(RgbImage image, int width, int height)
    {
        if (width > image.Width || height > image.Height)
            throw new ArgumentException($"Cannot centre-crop {image.Width}x{image.Height} to {width}x{height}.");
        if (width == image.Width && height == image.Height) return image;
        int top = (image.Height - height) / 2, left = (image.Width - width) / 2;
        var pixels = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
            image.Pixels.AsSpan(((y + top) * image.Width + left) * 3, width * 3).CopyTo(pixels.AsSpan(y * width * 3));
        return new RgbImage(width, height, pixels);
    }
}
