namespace MoeCompiler.Tokenizers;

/// <summary>Hugging Face's clean_up_tokenization: the space before punctuation and English contractions is removed
/// after decoding, by these replacements applied one after the other over the whole text.</summary>
public static class TokenizationSpaces
{
    private static readonly (string From, string To)[] Replacements =
    [
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
        (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ];

    public static string CleanUp(string text)
    {
        if (!text.Contains(' ')) return text;
        foreach (var (from, to) in Replacements) text = text.Replace(from, to, StringComparison.Ordinal);
        return text;
    }

    /// <summary>Every replacement only touches spaces and the characters below, so a text cut right after any other
    /// character cleans up the same in pieces as whole: CleanUp(a + b) == CleanUp(a) + CleanUp(b).</summary>
    internal static bool IsSafeCutAfter(char c) => c is not (' ' or '.' or '?' or '!' or ',' or '\'' or 'n' or 't' or 'm' or 's' or 'v' or 'e' or 'r');
}
