namespace MoeCompiler.Imaging;

public sealed record ImageDecodeOptions
{
    /// <summary>Default limit: 64 megapixels, far above any camera photo a vision tower would see.</summary>
    public const long DefaultMaxPixels = 64L * 1024 * 1024;

    /// <summary>Images declaring more pixels than this are refused before any pixel memory is allocated.</summary>
    public long MaxPixels { get; init; } = DefaultMaxPixels;

    /// <summary>Rotate/flip JPEGs by their EXIF orientation tag, as Pillow's <c>ImageOps.exif_transpose</c> does.</summary>
    public bool ApplyExifOrientation { get; init; } = true;

    internal static ImageDecodeOptions Default { get; } = new();
}
