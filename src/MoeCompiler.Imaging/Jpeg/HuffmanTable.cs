namespace MoeCompiler.Imaging.Jpeg;

/// <summary>
/// A canonical Huffman table: codes of up to <see cref="FastBits"/> bits resolve with one lookup
/// (entry = (length &lt;&lt; 8) | symbol, 0 when the code is longer), longer ones by the classic maxcode search.
/// Building validates the table, so a hostile DHT cannot overflow it.
/// </summary>
internal sealed class HuffmanTable
{
    public const int FastBits = 9;

    public readonly ushort[] Fast = new ushort[1 << FastBits];

    /// <summary>
    /// For AC tables: when a code and its magnitude bits fit in <see cref="FastBits"/> together, the whole
    /// coefficient in one entry: (value &lt;&lt; 8) | (run &lt;&lt; 4) | total length; 0 otherwise.
    /// </summary>
    public readonly short[] FastAc = new short[1 << FastBits];
    private readonly int[] _maxCode = new int[18];     // largest code of each length, -1 when none
    private readonly int[] _valueOffset = new int[17]; // symbol index = code + offset
    private readonly byte[] _symbols;

    public HuffmanTable(ReadOnlySpan<byte> counts, ReadOnlySpan<byte> symbols)
    {
        _symbols = symbols.ToArray();
        int code = 0, k = 0;
        for (int length = 1; length <= 16; length++)
        {
            int count = counts[length - 1];
            _valueOffset[length] = k - code;
            _maxCode[length] = count > 0 ? code + count - 1 : -1;
            for (int i = 0; i < count; i++)
            {
                if (code >= 1 << length)
                    throw new ImageDecodingException("JPEG has an invalid Huffman table (code space overflows)");
                if (length <= FastBits)
                {
                    int first = code << (FastBits - length), span = 1 << (FastBits - length);
                    Fast.AsSpan(first, span).Fill((ushort)((length << 8) | symbols[k]));
                }
                code++;
                k++;
            }
            code <<= 1;
        }
        _maxCode[17] = int.MaxValue; // sentinel: the search always stops

        for (int i = 0; i < Fast.Length; i++)
        {
            int entry = Fast[i], length = entry >> 8, run = (entry >> 4) & 15, size = entry & 15;
            if (length == 0 || size == 0 || length + size > FastBits) continue;
            int magnitude = (i >> (FastBits - length - size)) & ((1 << size) - 1);
            int value = magnitude < 1 << (size - 1) ? magnitude - (1 << size) + 1 : magnitude;
            if (value is >= -128 and <= 127)
                FastAc[i] = (short)((value << 8) | (run << 4) | (length + size));
        }
    }

    /// <summary>Resolves a code longer than <see cref="FastBits"/> from the next 16 bits; length 0 if invalid.</summary>
    public (int Length, int Symbol) DecodeSlow(int next16)
    {
        for (int length = FastBits + 1; length <= 16; length++)
        {
            int code = next16 >> (16 - length);
            if (code <= _maxCode[length])
            {
                int index = code + _valueOffset[length];
                if ((uint)index >= (uint)_symbols.Length) return (0, 0);
                return (length, _symbols[index]);
            }
        }
        return (0, 0);
    }
}
