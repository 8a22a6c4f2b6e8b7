namespace MoeCompiler.Imaging;

/// <summary>The bytes are not a picture this library can decode (unknown format, corrupt, truncated, too large).</summary>
public sealed class ImageDecodingException : Exception
{
    public ImageDecodingException(string message, string? fileName = null, Exception? inner = null)
        : base(fileName is null ? message : $"{fileName}: {message}", inner)
    {
        FileName = fileName;
        Problem = message;
    }

    /// <summary>The file that failed, when decoding started from a path.</summary>
    public string? FileName { get; }

    /// <summary>The problem without the file name.</summary>
    public string Problem { get; }
}
