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
        // Fast path: plain bytes (no 0xFF) while data lasts.
        while (_bits <= 56 && _zeroBytesFed == 0 && Position < _data.Length && _data[Position] != 0xFF)
        {
            _buffer |= (ulong)_data[Position++] << (56 - _bits);
            _bits += 8;
        }
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
        if (n > 16) throw new ImageDecodingException("JPEG coefficient has an invalid magnitude category");
        int v = Bits(n);
        return v < 1 << (n - 1) ? v - (1 << n) + 1 : v;
    }

    public int Decode(HuffmanTable table)
    {
        if (_bits < 16) Fill();
        int entry = table.Fast[(int)(_buffer >> (64 - HuffmanTable.FastBits))];
        int length = entry >> 8, symbol = entry & 0xFF;
        if (length == 0)
        {
            (length, symbol) = table.DecodeSlow((int)(_buffer >> 48));
            if (length == 0) throw new ImageDecodingException("JPEG entropy-coded data holds an invalid Huffman code");
        }
        _buffer <<= length;
        _bits -= length;
        return symbol;
    }

    /// <summary>
    /// Decodes one baseline (sequential Huffman) block into <paramref name="block"/> (natural order). The bit buffer
    /// lives in locals for the whole block and is refilled only when fewer than 32 bits remain, enough for any one
    /// coefficient (a 16-bit code plus at most 15 magnitude bits).
    /// </summary>
    public void DecodeBaselineBlock(Span<short> block, HuffmanTable dc, HuffmanTable ac, ref int predictor, ReadOnlySpan<byte> zigZag)
    {
        ulong buffer = _buffer;
        int bits = _bits;
        if (bits < 32) (buffer, bits) = Refill(buffer, bits);

        int size = DecodeSymbol(dc, ref buffer, ref bits);
        if (size != 0)
        {
            if (size > 16) throw new ImageDecodingException("JPEG DC coefficient has an invalid magnitude category");
            predictor += Extend((int)(buffer >> (64 - size)), size);
            buffer <<= size;
            bits -= size;
        }
        block[0] = (short)predictor;

        var fastAc = ac.FastAc;
        for (int k = 1; k < 64; k++)
        {
            if (bits < 32) (buffer, bits) = Refill(buffer, bits);
            int fast = fastAc[(int)(buffer >> (64 - HuffmanTable.FastBits))];
            if (fast != 0)
            {
                k += (fast >> 4) & 15;
                int length = fast & 15;
                buffer <<= length;
                bits -= length;
                if (k > 63) throw new ImageDecodingException("JPEG block has more than 64 coefficients (corrupt data)");
                block[zigZag[k]] = (short)(fast >> 8);
                continue;
            }
            int rs = DecodeSymbol(ac, ref buffer, ref bits), run = rs >> 4;
            size = rs & 15;
            if (size == 0)
            {
                if (run != 15) break;
                k += 15;
                continue;
            }
            k += run;
            if (k > 63) throw new ImageDecodingException("JPEG block has more than 64 coefficients (corrupt data)");
            block[zigZag[k]] = (short)Extend((int)(buffer >> (64 - size)), size);
            buffer <<= size;
            bits -= size;
        }
        _buffer = buffer;
        _bits = bits;
    }

    /// <summary>
    /// A progressive first AC scan (Ah = 0) for one block; <paramref name="eobRun"/> carries across blocks.
    /// Progressive blocks are kept in zig-zag order (index = k) until the IDCT.
    /// </summary>
    public void DecodeAcFirst(Span<short> block, HuffmanTable ac, int ss, int se, int al, ref int eobRun)
    {
        if (eobRun > 0)
        {
            eobRun--;
            return;
        }
        ulong buffer = _buffer;
        int bits = _bits;
        var fastAc = ac.FastAc;
        for (int k = ss; k <= se; k++)
        {
            if (bits < 32) (buffer, bits) = Refill(buffer, bits);
            int fast = fastAc[(int)(buffer >> (64 - HuffmanTable.FastBits))];
            if (fast != 0)
            {
                k += (fast >> 4) & 15;
                int length = fast & 15;
                buffer <<= length;
                bits -= length;
                if (k > 63) throw new ImageDecodingException("JPEG progressive block runs past coefficient 63 (corrupt data)");
                block[k] = (short)((fast >> 8) * (1 << al));
                continue;
            }
            int rs = DecodeSymbol(ac, ref buffer, ref bits), run = rs >> 4, size = rs & 15;
            if (size == 0)
            {
                if (run < 15)
                {
                    eobRun = (1 << run) - 1;
                    if (run > 0)
                    {
                        eobRun += (int)(buffer >> (64 - run));
                        buffer <<= run;
                        bits -= run;
                    }
                    break;
                }
                k += 15;
                continue;
            }
            k += run;
            if (k > 63) throw new ImageDecodingException("JPEG progressive block runs past coefficient 63 (corrupt data)");
            block[k] = (short)(Extend((int)(buffer >> (64 - size)), size) * (1 << al));
            buffer <<= size;
            bits -= size;
        }
        _buffer = buffer;
        _bits = bits;
    }

    /// <summary>
    /// A progressive AC refinement scan (Ah &gt; 0) for one zig-zag-ordered block, with libjpeg's decode_mcu_AC_refine
    /// semantics. A bit mask of the already non-zero coefficients replaces the position-by-position walk: runs
    /// count zero positions (the run+1-th zero is where a new coefficient lands) and every non-zero coefficient
    /// passed over reads one correction bit, in order.
    /// </summary>
    public void DecodeAcRefine(Span<short> block, HuffmanTable ac, int ss, int se, int al, ref int eobRun)
    {
        ulong buffer = _buffer;
        int bits = _bits;
        int p1 = 1 << al, m1 = -1 << al;
        ulong nonZero = NonZeroMask(block);
        ulong band = (se == 63 ? ulong.MaxValue : (1UL << (se + 1)) - 1) & (ulong.MaxValue << ss);
        int k = ss;
        if (eobRun == 0)
        {
            for (; k <= se; k++)
            {
                if (bits < 32) (buffer, bits) = Refill(buffer, bits);
                int rs = DecodeSymbol(ac, ref buffer, ref bits), run = rs >> 4, size = rs & 15, value = 0;
                if (size != 0)
                {
                    if (size != 1) throw new ImageDecodingException("JPEG progressive refinement has a coefficient of size > 1 (corrupt data)");
                    value = (buffer >> 63) != 0 ? p1 : m1;
                    buffer <<= 1;
                    bits--;
                }
                else if (run != 15)
                {
                    eobRun = 1 << run;
                    if (run > 0)
                    {
                        eobRun += (int)(buffer >> (64 - run));
                        buffer <<= run;
                        bits -= run;
                    }
                    break;
                }
                ulong from = band & (ulong.MaxValue << k);
                ulong zeros = ~nonZero & from;
                for (int i = 0; i < run && zeros != 0; i++) zeros &= zeros - 1;
                int target = zeros == 0 ? se + 1 : System.Numerics.BitOperations.TrailingZeroCount(zeros);
                ulong passed = nonZero & from & (target >= 64 ? ulong.MaxValue : (1UL << target) - 1);
                Correct(block, passed, p1, m1, ref buffer, ref bits);
                k = target;
                if (value != 0 && k <= se)
                {
                    block[k] = (short)value;
                    nonZero |= 1UL << k;
                }
            }
        }
        if (eobRun > 0)
        {
            if (k <= se) Correct(block, nonZero & band & (ulong.MaxValue << k), p1, m1, ref buffer, ref bits);
            eobRun--;
        }
        _buffer = buffer;
        _bits = bits;
    }

    /// <summary>Reads one correction bit for each coefficient in <paramref name="positions"/>, lowest first.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private void Correct(Span<short> block, ulong positions, int p1, int m1, ref ulong buffer, ref int bits)
    {
        while (positions != 0)
        {
            int position = System.Numerics.BitOperations.TrailingZeroCount(positions);
            positions &= positions - 1;
            if (bits < 1) (buffer, bits) = Refill(buffer, bits);
            bool correction = (long)buffer < 0;
            buffer <<= 1;
            bits--;
            int coefficient = block[position];
            if (correction && (coefficient & p1) == 0)
                block[position] = (short)(coefficient >= 0 ? coefficient + p1 : coefficient + m1);
        }
    }

    private static ulong NonZeroMask(ReadOnlySpan<short> block)
    {
        ref short first = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(block[..64]);
        ulong zero = 0;
        for (int i = 0; i < 4; i++)
        {
            var v = System.Runtime.Intrinsics.Vector256.LoadUnsafe(ref first, (nuint)(16 * i));
            zero |= (ulong)System.Runtime.Intrinsics.Vector256.ExtractMostSignificantBits(
                System.Runtime.Intrinsics.Vector256.Equals(v, System.Runtime.Intrinsics.Vector256<short>.Zero)) << (16 * i);
        }
        return ~zero;
    }

    /// <summary>Tops up a caller's local bit buffer. Values in and out (not refs), so the caller's locals stay in registers.</summary>
    private (ulong Buffer, int Bits) Refill(ulong buffer, int bits)
    {
        _buffer = buffer;
        _bits = bits;
        Fill();
        return (_buffer, _bits);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static int Extend(int v, int n) => v < 1 << (n - 1) ? v - (1 << n) + 1 : v;

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static int DecodeSymbol(HuffmanTable table, ref ulong buffer, ref int bits)
    {
        int entry = table.Fast[(int)(buffer >> (64 - HuffmanTable.FastBits))];
        int length = entry >> 8, symbol = entry & 0xFF;
        if (length == 0)
        {
            (length, symbol) = table.DecodeSlow((int)(buffer >> 48));
            if (length == 0) throw new ImageDecodingException("JPEG entropy-coded data holds an invalid Huffman code");
        }
        buffer <<= length;
        bits -= length;
        return symbol;
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
