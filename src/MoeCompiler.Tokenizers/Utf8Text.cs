using System.Text;

namespace MoeCompiler.Tokenizers;

internal static class Utf8Text
{
    /// <summary>Length of the longest prefix that does not end inside a character that later bytes could
    /// still complete. Bytes that can never become valid are part of the prefix (they decode to U+FFFD).</summary>
    public static int CompletePrefixLength(ReadOnlySpan<byte> bytes)
    {
        int n = bytes.Length;
        // A character is at most 4 bytes, so an unfinished one starts within the last 3 bytes.
        for (int back = 1; back <= 3 && back <= n; back++)
        {
            int start = n - back;
            byte lead = bytes[start];
            if ((lead & 0xC0) == 0x80) continue; // continuation byte: keep looking for the lead
            int needed = lead switch
            {
                >= 0xC2 and <= 0xDF => 2,
                >= 0xE0 and <= 0xEF => 3,
                >= 0xF0 and <= 0xF4 => 4,
                _ => 0,
            };
            if (needed <= back) return n; // complete, or an invalid lead: nothing to wait for
            // Every byte after the lead must be a continuation allowed in its position.
            for (int i = start + 1; i < n; i++)
            {
                byte b = bytes[i];
                bool ok = (b & 0xC0) == 0x80;
                if (i == start + 1)
                {
                    ok &= lead switch
                    {
                        0xE0 => b >= 0xA0,
                        0xED => b <= 0x9F,
                        0xF0 => b >= 0x90,
                        0xF4 => b <= 0x8F,
                        _ => true,
                    };
                }
                if (!ok) return n;
            }
            return start;
        }
        return n;
    }

    /// <summary>Replaces lone surrogates with U+FFFD (tiktoken and Python do the same before encoding).</summary>
    public static string ReplaceLoneSurrogates(string text)
    {
        int i = 0;
        for (; i < text.Length; i++)
        {
            char c = text[i];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            break;
        }
        if (i >= text.Length) return text;
        var builder = new StringBuilder(text.Length);
        builder.Append(text, 0, i);
        for (; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                builder.Append(c).Append(text[i + 1]);
                i++;
            }
            else builder.Append(char.IsSurrogate(c) ? '\uFFFD' : c);
        }
        return builder.ToString();
    }
}
