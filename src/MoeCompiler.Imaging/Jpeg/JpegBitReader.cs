namespace MoeCompiler.Imaging.Jpeg;

/// <summary>
/// Reads entropy-coded bits, removing 0xFF00 stuffing. At a marker or the end of the data it supplies zero bits
/// (as libjpeg does) and counts them, so a scan that really needed them can be reported as truncated/corrupt.
/// </summary>
internal ref struct JpegBitReader
{
    private readonly ReadOnlySpan<byte> _data;
    private ulong _buffer;
    private int _bits;
    private int _zeroBytesFed;

    public JpegBitReader(ReadOnlySpan<byte> data, int position)
    {
        _data = data;
        Position = position;
    }

    /// <summary>The next unread byte of the stream (at a marker once the scan's data is exhausted).</summary>
    public int Position { get; private set; }

    /// <summary>Zero bits consumed past the end of the entropy-coded data: non-zero means the data was cut short.</summary>
    public readonly long MissingBits => Math.Max(0, (long)_zeroBytesFed * 8 - _bits);

    private void Fill()
    {
        while (_bits <= 56)
        {
            int b = 0;
            if (_zeroBytesFed == 0 && Position < _data.Length)
            {
                b = _data[Position];
                if (b == 0xFF)
                {
                    int next = Position + 1;
                    while (next < _data.Length && _data[next] == 0xFF) next++;
                    if (next < _data.Length && _data[next] == 0x00)
                    {
                        Position = next + 1;
                    }
                    else
                    {
                        _zeroBytesFed++;
                        b = 0;
                    }
                }
                else
                {
                    Position++;
                }
            }
            else
            {
                _zeroBytesFed++;
            }
            _buffer |= (ulong)b << (56 - _bits);
            _bits += 8;
        }
    }

    public int Bit()
    {
        if (_bits < 1) Fill();
        int v = (int)(_buffer >> 63);
        _buffer <<= 1;
        _bits--;
        return v;
    }

    public int Bits(int n)
    {
        if (n == 0) return 0;
        if (_bits < n) Fill();
        int v = (int)(_buffer >> (64 - n));
        _buffer <<= n;
        _bits -= n;
        return v;
    }

    /// <summary>Reads n bits and sign-extends them as JPEG magnitude categories do (HUFF_EXTEND).</summary>
    public int Receive(int n)
    {
        if (n == 0) return 0;
        int v = Bits(n);
        return v < 1 << (n - 1) ? v - (1 << n) + 1 : v;
    }

    public int Decode(HuffmanTable table)
    {
        if (_bits < 16) Fill();
        ushort entry = table.Lookup[(int)(_buffer >> 48)];
        int length = entry >> 8;
        if (length == 0) throw new ImageDecodingException("JPEG entropy-coded data holds an invalid Huffman code");
        _buffer <<= length;
        _bits -= length;
        return entry & 0xFF;
    }

    /// <summary>Drops buffered bits and moves past the restart marker expected at this point, if any.</summary>
    public void Restart()
    {
        // Un-read whole bytes still buffered: they belong to the marker search below.
        _buffer = 0;
        _bits = 0;
        _zeroBytesFed = 0;
        while (Position + 1 < _data.Length)
        {
            if (_data[Position] == 0xFF && _data[Position + 1] is not (0x00 or 0xFF))
            {
                if (_data[Position + 1] is >= 0xD0 and <= 0xD7) Position += 2;
                return;
            }
            Position++;
        }
        Position = _data.Length;
    }
}
