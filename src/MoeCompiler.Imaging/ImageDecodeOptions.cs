namespace MoeCompiler.Imaging;

public sealed record ImageDecodeOptions
{
    /// <summary>Default limit: 64 megapixels, far above any camera photo a vision tower would see.</summary>
    public const long DefaultMaxPixels = 64L * 1024 * 1024;

    /// <summary>Images declaring more pixels than this are refused before any pixel memory is allocated.</summary>
    public long MaxPixels { get; init; } = DefaultMaxPixels;

    /// <summary>Rotate/flip JPEGs by their EXIF orientation tag, as Pillow's <c>ImageOps.exif_transpose</c> does.</summary>
    public bool ApplyExifOrientation { get; init; } = true;

    /// <summary>Threads a single decode may use (-1: all cores). Use 1 when decoding many images concurrently.</summary>
    public int MaxDegreeOfParallelism { get; init; } = -1;

    internal ParallelOptions Parallelism => new() { MaxDegreeOfParallelism = MaxDegreeOfParallelism };

    internal static ImageDecodeOptions Default { get; } = new();
}
