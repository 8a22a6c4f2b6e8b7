namespace MoeCompiler.Tokenizers.Loading;

/// <summary>Size limits and reading of tokenizer files: only regular files (see src/Shared/RegularFile.cs).</summary>
internal static class TokenizerFiles
{
    /// <summary>tokenizer.json, vocab.json, tokenizer_config.json: the largest real ones are tens of megabytes.</summary>
    public const long MaxJsonBytes = 128L << 20;

    /// <summary>*.tiktoken, merges.txt, tokenizer.model: a few megabytes for a 200 000-token vocabulary.</summary>
    public const long MaxVocabularyBytes = 64L << 20;

    public static string[] ReadLines(string path, long maxBytes)
    {
        string text = MoeCompiler.IO.RegularFile.ReadAllText(path, maxBytes, (problem, inner) => new TokenizerLoadException(path, problem, inner));
        var lines = text.Split('\n');
        // File.ReadAllLines semantics: "\r\n" ends a line too, and a final newline adds no empty line
        for (int i = 0; i < lines.Length; i++)
            if (lines[i].EndsWith('\r')) lines[i] = lines[i][..^1];
        return text.EndsWith('\n') ? lines[..^1] : lines;
    }
}
