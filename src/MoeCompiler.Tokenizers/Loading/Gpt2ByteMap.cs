namespace MoeCompiler.Tokenizers.Loading;

/// <summary>GPT-2's reversible byte ↔ printable-character map used to store byte-level tokens as text in
/// vocab.json / merges.txt: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100 onwards.</summary>
internal static class Gpt2ByteMap
{
    public static readonly char[] ByteToChar = Build();
    public static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, b)).ToDictionary(x => x.c, x => (byte)x.b);

    private static char[] Build()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    /// <summary>The bytes a vocabulary string stands for, or null if it has a character outside the map.</summary>
    public static byte[]? ToBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!CharToByte.TryGetValue(token[i], out bytes[i])) return null;
        }
        return bytes;
    }
}
