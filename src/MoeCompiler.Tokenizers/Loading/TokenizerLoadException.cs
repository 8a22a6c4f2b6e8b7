namespace MoeCompiler.Tokenizers;

/// <summary>A tokenizer file is missing, unreadable or not in the expected format.</summary>
public sealed class TokenizerLoadException : Exception
{
    public TokenizerLoadException(string filePath, string message, Exception? inner = null)
        : base($"{filePath}: {message}", inner) => FilePath = filePath;

    public string FilePath { get; }
}
