namespace MoeCompiler.Imaging.Jpeg;

/// <summary>
/// A canonical Huffman table as a 16-bit lookahead array: entry = (code length &lt;&lt; 8) | symbol, 0 for bit
/// patterns that start no valid code. Building validates the table, so a hostile DHT cannot overflow it.
/// </summary>
internal sealed class HuffmanTable
{
    public readonly ushort[] Lookup = new ushort[1 << 16];

    public HuffmanTable(ReadOnlySpan<byte> counts, ReadOnlySpan<byte> symbols)
    {
        int code = 0, k = 0;
        for (int length = 1; length <= 16; length++)
        {
            for (int i = 0; i < counts[length - 1]; i++)
            {
                if (code >= 1 << length)
                    throw new ImageDecodingException("JPEG has an invalid Huffman table (code space overflows)");
                int first = code << (16 - length), span = 1 << (16 - length);
                ushort entry = (ushort)((length << 8) | symbols[k++]);
                Lookup.AsSpan(first, span).Fill(entry);
                code++;
            }
            code <<= 1;
        }
    }
}
