using System.Text.RegularExpressions;

namespace MoeCompiler.Tokenizers.Splitting;

/// <summary>Splits text into the pieces a pre-tokenizer regex would match, one at a time. The split regexes
/// of the supported tokenizers match at every position, so the pieces tile the text.</summary>
internal abstract class PieceSplitter
{
    /// <summary>Length in UTF-16 units of the piece that starts at <c>text[0]</c>, where <paramref name="text"/>
    /// is the rest of the current segment (the regex's lookahead sees the segment end as end of input).</summary>
    public abstract int NextPieceLength(ReadOnlySpan<char> text);

    public const string QwenPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public const string Gpt2Pattern =
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>The hand-written splitter for a known pattern, or a (slower) .NET Regex splitter otherwise.</summary>
    /// <param name="sourcePath">The file the pattern came from, named in errors.</param>
    /// <exception cref="TokenizerLoadException">The pattern is not a valid .NET regex, or it backtracks catastrophically.</exception>
    public static PieceSplitter ForPattern(string pattern, string sourcePath = "<pattern>") => pattern switch
    {
        QwenPattern => QwenSplitter.Instance,
        Gpt2Pattern => Gpt2Splitter.Instance,
        _ => new RegexSplitter(pattern, sourcePath),
    };

    /// <summary>Length of the maximal run of code points at <paramref name="start"/> accepted by <paramref name="accept"/>.</summary>
    protected static int RunLength(ReadOnlySpan<char> text, int start, Func<int, bool> accept)
    {
        int i = start;
        while (i < text.Length)
        {
            int cp = CodePoints.At(text, i, out int len);
            if (!accept(cp)) break;
            i += len;
        }
        return i - start;
    }

    protected static int LetterRun(ReadOnlySpan<char> text, int start)
    {
        int i = start;
        while (i < text.Length)
        {
            char c = text[i];
            if (c < 128)
            {
                if ((uint)((c | 0x20) - 'a') > 'z' - 'a') break;
                i++;
                continue;
            }
            int cp = CodePoints.At(text, i, out int len);
            if (!CodePoints.IsLetter(cp)) break;
            i += len;
        }
        return i - start;
    }

    protected static int WhiteSpaceRun(ReadOnlySpan<char> text, out int lastLineBreak)
    {
        lastLineBreak = -1;
        int i = 0;
        // White_Space code points are all in the BMP, one UTF-16 unit each.
        while (i < text.Length && CodePoints.IsWhiteSpace(text[i]) && !char.IsSurrogate(text[i]))
        {
            if (text[i] is '\r' or '\n') lastLineBreak = i;
            i++;
        }
        return i;
    }

    /// <summary>"\s+(?!\S)|\s+" on a text that starts with white space.</summary>
    protected static int TrailingSpaceRule(int runLength, int textLength) =>
        runLength == textLength || runLength == 1 ? runLength : runLength - 1;

    protected static bool EqualsIgnoreCaseAscii(char actual, char lower) =>
        actual == lower || actual == char.ToUpperInvariant(lower) || (lower == 's' && actual == '\u017F');
}

/// <summary>Qwen / Arcade100k: <see cref="PieceSplitter.QwenPattern"/>, implemented by hand.</summary>
internal sealed class QwenSplitter : PieceSplitter
{
    public static readonly QwenSplitter Instance = new();

    public override int NextPieceLength(ReadOnlySpan<char> text)
    {
        int c0 = CodePoints.At(text, 0, out int l0);
        if (c0 == '\'' && text.Length > 1)
        {
            int contraction = ContractionLength(text[1..]);
            if (contraction > 0) return 1 + contraction;
        }
        if (CodePoints.IsLetter(c0)) return l0 + LetterRun(text, l0);
        if (c0 != '\r' && c0 != '\n' && !CodePoints.IsNumber(c0) && l0 < text.Length)
        {
            int c1 = CodePoints.At(text, l0, out int l1);
            if (CodePoints.IsLetter(c1)) return l0 + l1 + LetterRun(text, l0 + l1);
        }
        if (CodePoints.IsNumber(c0)) return l0;

        int start = 0;
        if (c0 == ' ' && text.Length > 1 && CodePoints.IsOther(CodePoints.At(text, 1, out _))) start = 1;
        if (CodePoints.IsOther(CodePoints.At(text, start, out _)))
        {
            int end = start + RunLength(text, start, CodePoints.IsOther);
            while (end < text.Length && text[end] is '\r' or '\n') end++;
            return end;
        }

        int run = WhiteSpaceRun(text, out int lastLineBreak);
        if (lastLineBreak >= 0) return lastLineBreak + 1;
        return TrailingSpaceRule(run, text.Length);
    }

    // (?i:'s|'t|'re|'ve|'m|'ll|'d) after the apostrophe; case folding as the Rust regex crate does (ſ ~ s).
    private static int ContractionLength(ReadOnlySpan<char> t)
    {
        char a = t[0];
        if (EqualsIgnoreCaseAscii(a, 's') || EqualsIgnoreCaseAscii(a, 't') || EqualsIgnoreCaseAscii(a, 'm') || EqualsIgnoreCaseAscii(a, 'd'))
            return 1;
        if (t.Length < 2) return 0;
        char b = t[1];
        if (EqualsIgnoreCaseAscii(a, 'r') && EqualsIgnoreCaseAscii(b, 'e')) return 2;
        if (EqualsIgnoreCaseAscii(a, 'v') && EqualsIgnoreCaseAscii(b, 'e')) return 2;
        if (EqualsIgnoreCaseAscii(a, 'l') && EqualsIgnoreCaseAscii(b, 'l')) return 2;
        return 0;
    }
}

/// <summary>GPT-2 / Phi-2 byte-level pre-tokenizer: <see cref="PieceSplitter.Gpt2Pattern"/>, by hand.</summary>
internal sealed class Gpt2Splitter : PieceSplitter
{
    public static readonly Gpt2Splitter Instance = new();

    public override int NextPieceLength(ReadOnlySpan<char> text)
    {
        char first = text[0];
        if (first == '\'' && text.Length > 1)
        {
            int contraction = ContractionLength(text[1..]);
            if (contraction > 0) return 1 + contraction;
        }
        int start = first == ' ' && text.Length > 1 ? 1 : 0;
        int cp = CodePoints.At(text, start, out _);
        if (CodePoints.IsLetter(cp)) return start + LetterRun(text, start);
        if (CodePoints.IsNumber(cp)) return start + RunLength(text, start, CodePoints.IsNumber);
        if (CodePoints.IsOther(cp)) return start + RunLength(text, start, CodePoints.IsOther);
        int run = WhiteSpaceRun(text, out _);
        return TrailingSpaceRule(run, text.Length);
    }

    private static int ContractionLength(ReadOnlySpan<char> t)
    {
        char a = t[0];
        if (a is 's' or 't' or 'm' or 'd') return 1;
        if (t.Length < 2) return 0;
        char b = t[1];
        return (a, b) is ('r', 'e') or ('v', 'e') or ('l', 'l') ? 2 : 0;
    }
}

/// <summary>
/// Fallback for split patterns met in a tokenizer.json that have no hand-written splitter. The pattern comes from a
/// file, so it may backtrack catastrophically (<c>(a+)+$</c> takes minutes on 40 characters): every match runs
/// under a timeout, and the pattern is tried on a few such inputs when it is loaded so that most bad patterns
/// fail then, with the file named, rather than in the middle of a conversation.
/// </summary>
internal sealed class RegexSplitter : PieceSplitter
{
    /// <summary>Far above what a splitting regex needs for one piece (microseconds), far below a noticeable stall.</summary>
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromMilliseconds(200);

    // Long runs of one character class followed by a character that breaks the run: what makes nested
    // quantifiers backtrack exponentially.
    private static readonly string[] Probes =
    [
        new string('a', 40) + "!", new string(' ', 40) + "!", new string('1', 40) + "!", string.Concat(Enumerable.Repeat("a1", 20)) + "!",
        string.Concat(Enumerable.Repeat("a ", 20)) + "!", new string('\n', 40) + "a",
    ];

    private readonly Regex _regex;
    private readonly string _sourcePath;

    public RegexSplitter(string pattern, string sourcePath = "<pattern>")
    {
        ArgumentNullException.ThrowIfNull(pattern);
        _sourcePath = sourcePath;
        try
        {
            _regex = new Regex(pattern, RegexOptions.CultureInvariant, MatchTimeout);
        }
        catch (ArgumentException e)
        {
            throw new TokenizerLoadException(sourcePath, $"the Split regex \"{Shorten(pattern)}\" is not a valid regular expression: {e.Message}", e);
        }
        foreach (string probe in Probes)
        {
            for (int start = 0; start < probe.Length; start += NextPieceLength(probe.AsSpan(start)))
            {
            }
        }
    }

    public override int NextPieceLength(ReadOnlySpan<char> text)
    {
        try
        {
            foreach (ValueMatch match in _regex.EnumerateMatches(text))
            {
                // A pattern that skips characters would drop text; keep them as their own piece instead.
                return match.Index > 0 ? match.Index : Math.Max(match.Length, 1);
            }
        }
        catch (RegexMatchTimeoutException e)
        {
            throw new TokenizerLoadException(_sourcePath,
                $"the Split regex \"{Shorten(_regex.ToString())}\" took over {MatchTimeout.TotalMilliseconds} ms to find one piece " +
                "(it backtracks catastrophically); this tokenizer cannot be used until the pattern is fixed", e);
        }
        return text.Length;
    }

    private static string Shorten(string pattern) => pattern.Length > 80 ? pattern[..80] + "..." : pattern;
}
