using System.Globalization;
using System.Runtime.CompilerServices;

namespace MoeCompiler.Tokenizers.Splitting;

/// <summary>Character classes used by the split regexes, evaluated per Unicode code point (as tiktoken's
/// Rust regex does), not per UTF-16 unit. Lone surrogates count as one "other" code point.</summary>
internal static class CodePoints
{
    private const byte Letter = 1, Number = 2, Space = 4;
    private static readonly byte[] AsciiClass = BuildAscii();

    private static byte[] BuildAscii()
    {
        var table = new byte[128];
        for (int c = 0; c < 128; c++)
            table[c] = Classify(c);
        return table;
    }

    private static byte Classify(int codePoint)
    {
        if (IsWhiteSpaceSlow(codePoint)) return Space;
        switch (CharUnicodeInfo.GetUnicodeCategory(codePoint))
        {
            case UnicodeCategory.UppercaseLetter:
            case UnicodeCategory.LowercaseLetter:
            case UnicodeCategory.TitlecaseLetter:
            case UnicodeCategory.ModifierLetter:
            case UnicodeCategory.OtherLetter:
                return Letter;
            case UnicodeCategory.DecimalDigitNumber:
            case UnicodeCategory.LetterNumber:
            case UnicodeCategory.OtherNumber:
                return Number;
            default:
                return 0;
        }
    }

    // Regex \s: [\t\n\v\f\r\x85\p{Z}], which equals the Unicode White_Space property.
    private static bool IsWhiteSpaceSlow(int c) =>
        c is >= 0x09 and <= 0x0D or 0x85 ||
        (c < 0x10000 && !char.IsSurrogate((char)c) && CharUnicodeInfo.GetUnicodeCategory(c) is
            UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte ClassOf(int codePoint) => codePoint < 128 ? AsciiClass[codePoint] : Classify(codePoint);

    public static bool IsLetter(int codePoint) => ClassOf(codePoint) == Letter;
    public static bool IsNumber(int codePoint) => ClassOf(codePoint) == Number;
    public static bool IsWhiteSpace(int codePoint) => ClassOf(codePoint) == Space;
    /// <summary>[^\s\p{L}\p{N}]</summary>
    public static bool IsOther(int codePoint) => ClassOf(codePoint) == 0;

    /// <summary>Code point at <paramref name="index"/> and its length in UTF-16 units (2 for a valid pair,
    /// otherwise 1, so a lone surrogate is its own code point).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int At(ReadOnlySpan<char> text, int index, out int length)
    {
        char c = text[index];
        if (char.IsHighSurrogate(c) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]))
        {
            length = 2;
            return char.ConvertToUtf32(c, text[index + 1]);
        }
        length = 1;
        return c;
    }
}
