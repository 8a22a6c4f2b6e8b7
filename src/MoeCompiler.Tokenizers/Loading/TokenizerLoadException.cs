namespace MoeCompiler.Tokenizers;

/// <summary>A tokenizer file is missing, unreadable or not in the expected format.</summary>
public sealed class TokenizerLoadException : Exception
{
    public TokenizerLoadException(string filePath, string message, Exception? inner = null)
        : base($"{filePath}: {message}", inner)
    {
        FilePath = filePath;
        Problem = message;
    }

    /// <summary>The file at fault (or the folder, when no tokenizer file was found in it).</summary>
    public string FilePath { get; }

    /// <summary>The message without the file name.</summary>
    public string Problem { get; }
}
