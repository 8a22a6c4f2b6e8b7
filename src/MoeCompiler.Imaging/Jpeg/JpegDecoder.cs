using System.Buffers.Binary;

namespace MoeCompiler.Imaging.Jpeg;

/// <summary>
/// Baseline and progressive Huffman JPEG, 8-bit, any integral sampling factors, restart intervals, grey, YCbCr,
/// RGB, CMYK and YCCK. Pixel values follow libjpeg-turbo's defaults (islow IDCT, fancy upsampling, its YCbCr
/// tables) and, for CMYK, Pillow's inversion and CMYK→RGB conversion. EXIF orientation is applied on request.
/// </summary>
internal sealed partial class JpegDecoder
{
    /// <summary>libjpeg-turbo advises a scan limit against progressive "scan bombs"; 1000 is far above real files.</summary>
    private const int MaxScans = 1000;

    internal static readonly byte[] ZigZag =
    [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
        28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
        54, 47, 55, 62, 63,
    ];

    private sealed class Component
    {
        public int Id, H, V, QuantIndex;
        public ushort[]? Quant;                 // latched at the component's first scan, as libjpeg does
        public int[] WideQuant = [];            // the same, widened for the vector IDCT
        public int BlocksPerLine, BlocksPerColumn; // allocated (MCU-padded)
        public int WidthInBlocks, HeightInBlocks;  // covering the component's own sample extent
        public int SampleWidth, SampleHeight;      // downsampled_width / downsampled_height
        public short[] Coefficients = [];       // whole-image coefficients (progressive or multi-scan files)
        public byte[]? Plane;                   // samples, when a single sequential scan was decoded row by row
        public short[] RowCoefficients = [];    // one MCU row of coefficients while streaming
        public int DcPredictor;
        public HuffmanTable? Dc, Ac;
    }

    private readonly ImageDecodeOptions _options;
    private readonly ushort[]?[] _quant = new ushort[4][];
    private readonly HuffmanTable?[] _dcTables = new HuffmanTable[4], _acTables = new HuffmanTable[4];
    private Component[] _components = [];
    private int _width, _height, _maxH, _maxV, _mcusPerLine, _mcusPerColumn, _restartInterval;
    private bool _progressive, _frameSeen, _sawJfif, _sawAdobe;
    private int _adobeTransform;
    private int _orientation = 1;
    private int _scans;
    private int _eobRun;

    private JpegDecoder(ImageDecodeOptions options) => _options = options;

    public static RgbImage Decode(ReadOnlySpan<byte> data, ImageDecodeOptions options)
    {
        var decoder = new JpegDecoder(options);
        decoder.ReadStream(data);
        var image = decoder.Output();
        return options.ApplyExifOrientation ? Orientation.Apply(image, decoder._orientation) : image;
    }

    private void ReadStream(ReadOnlySpan<byte> data)
    {
        int pos = 2;
        while (true)
        {
            // Find the next marker, skipping fill bytes (and, leniently, stray bytes as libjpeg's next_marker does).
            while (pos < data.Length && data[pos] != 0xFF) pos++;
            while (pos < data.Length && data[pos] == 0xFF) pos++;
            if (pos >= data.Length)
            {
                if (_scans > 0) throw new ImageDecodingException("JPEG is truncated (no end-of-image marker)");
                throw new ImageDecodingException("JPEG is truncated (no image data)");
            }
            int marker = data[pos++];
            if (marker == 0x00 || marker is >= 0xD0 and <= 0xD7 || marker == 0x01) continue; // stray stuffing/RST
            if (marker == 0xD9) // EOI
            {
                if (_scans == 0) throw new ImageDecodingException("JPEG has no scans before its end-of-image marker");
                return;
            }
            if (marker == 0xD8) throw new ImageDecodingException("JPEG has a second start-of-image marker");
            if (pos + 2 > data.Length) throw new ImageDecodingException("JPEG is truncated (marker length)");
            int length = BinaryPrimitives.ReadUInt16BigEndian(data[pos..]);
            if (length < 2 || pos + length > data.Length)
                throw new ImageDecodingException($"JPEG marker 0xFF{marker:X2} has length {length}, past the end of the data");
            var segment = data.Slice(pos + 2, length - 2);
            pos += length;
            switch (marker)
            {
                case 0xC0 or 0xC1 or 0xC2:
                    ReadFrame(segment, progressive: marker == 0xC2);
                    break;
                case 0xC3 or (>= 0xC5 and <= 0xC7) or (>= 0xC9 and <= 0xCB) or (>= 0xCD and <= 0xCF):
                    throw new ImageDecodingException($"JPEG uses an unsupported coding process (SOF marker 0xFF{marker:X2}: lossless, hierarchical or arithmetic)");
                case 0xC4:
                    ReadHuffmanTables(segment);
                    break;
                case 0xDB:
                    ReadQuantTables(segment);
                    break;
                case 0xDD:
                    if (segment.Length < 2) throw new ImageDecodingException("JPEG DRI segment is too short");
                    _restartInterval = BinaryPrimitives.ReadUInt16BigEndian(segment);
                    break;
                case 0xDA:
                    pos = ReadScan(data, segment, pos);
                    break;
                case 0xE0:
                    if (segment.Length >= 5 && segment[..5].SequenceEqual("JFIF\0"u8)) _sawJfif = true;
                    break;
                case 0xE1:
                    if (_orientation == 1) _orientation = Orientation.ReadExif(segment);
                    break;
                case 0xEE:
                    if (segment.Length >= 12 && segment[..5].SequenceEqual("Adobe"u8))
                    {
                        _sawAdobe = true;
                        _adobeTransform = segment[11];
                    }
                    break;
            }
        }
    }

    private void ReadFrame(ReadOnlySpan<byte> s, bool progressive)
    {
        if (_frameSeen) throw new ImageDecodingException("JPEG has more than one frame header");
        if (s.Length < 6) throw new ImageDecodingException("JPEG frame header is too short");
        if (s[0] != 8) throw new ImageDecodingException($"JPEG sample precision {s[0]} is not supported (only 8-bit)");
        _height = BinaryPrimitives.ReadUInt16BigEndian(s[1..]);
        _width = BinaryPrimitives.ReadUInt16BigEndian(s[3..]);
        int count = s[5];
        if (_height == 0) throw new ImageDecodingException("JPEG declares height 0 (DNL-defined heights are not supported)");
        ImageDecoder.CheckDimensions(_width, _height, _options, "JPEG");
        if (count is not (1 or 3 or 4)) throw new ImageDecodingException($"JPEG has {count} components (1, 3 or 4 are supported)");
        if (s.Length < 6 + 3 * count) throw new ImageDecodingException("JPEG frame header is too short for its components");
        _progressive = progressive;
        _components = new Component[count];
        for (int i = 0; i < count; i++)
        {
            var c = s.Slice(6 + 3 * i, 3);
            int h = c[1] >> 4, v = c[1] & 15;
            if (h is < 1 or > 4 || v is < 1 or > 4) throw new ImageDecodingException($"JPEG component {i} has invalid sampling factors {h}x{v}");
            if (c[2] > 3) throw new ImageDecodingException($"JPEG component {i} names quantisation table {c[2]}");
            _components[i] = new Component { Id = c[0], H = h, V = v, QuantIndex = c[2] };
        }
        _maxH = _components.Max(c => c.H);
        _maxV = _components.Max(c => c.V);
        _mcusPerLine = (_width + 8 * _maxH - 1) / (8 * _maxH);
        _mcusPerColumn = (_height + 8 * _maxV - 1) / (8 * _maxV);
        foreach (var c in _components)
        {
            if (_maxH % c.H != 0 || _maxV % c.V != 0)
                throw new ImageDecodingException($"JPEG uses fractional sampling ({c.H}x{c.V} against {_maxH}x{_maxV}), which libjpeg does not support either");
            c.SampleWidth = (int)(((long)_width * c.H + _maxH - 1) / _maxH);
            c.SampleHeight = (int)(((long)_height * c.V + _maxV - 1) / _maxV);
            c.WidthInBlocks = (c.SampleWidth + 7) / 8;
            c.HeightInBlocks = (c.SampleHeight + 7) / 8;
            c.BlocksPerLine = _mcusPerLine * c.H;
            c.BlocksPerColumn = _mcusPerColumn * c.V;
        }
        long coefficientCount = _components.Sum(c => (long)c.BlocksPerLine * c.BlocksPerColumn * 64);
        if (coefficientCount > Array.MaxLength / 2)
            throw new ImageDecodingException($"JPEG {_width}x{_height} needs too much coefficient memory");
        _frameSeen = true;
    }

    private void ReadQuantTables(ReadOnlySpan<byte> s)
    {
        while (s.Length > 0)
        {
            int precision = s[0] >> 4, index = s[0] & 15;
            if (index > 3 || precision > 1) throw new ImageDecodingException($"JPEG DQT has invalid table byte 0x{s[0]:X2}");
            int size = 1 + 64 * (precision + 1);
            if (s.Length < size) throw new ImageDecodingException("JPEG DQT segment is truncated");
            var table = new ushort[64];
            for (int k = 0; k < 64; k++)
                table[ZigZag[k]] = precision == 0 ? s[1 + k] : BinaryPrimitives.ReadUInt16BigEndian(s[(1 + 2 * k)..]);
            _quant[index] = table;
            s = s[size..];
        }
    }

    private void ReadHuffmanTables(ReadOnlySpan<byte> s)
    {
        while (s.Length > 0)
        {
            if (s.Length < 17) throw new ImageDecodingException("JPEG DHT segment is truncated");
            int tableClass = s[0] >> 4, index = s[0] & 15;
            if (tableClass > 1 || index > 3) throw new ImageDecodingException($"JPEG DHT has invalid table byte 0x{s[0]:X2}");
            var counts = s.Slice(1, 16);
            int total = 0;
            foreach (byte n in counts) total += n;
            if (total > 256 || s.Length < 17 + total) throw new ImageDecodingException("JPEG DHT segment is truncated or declares too many codes");
            var table = new HuffmanTable(counts, s.Slice(17, total));
            (tableClass == 0 ? _dcTables : _acTables)[index] = table;
            s = s[(17 + total)..];
        }
    }

    /// <summary>Decodes one scan; returns the position of the first byte after its entropy-coded data.</summary>
    private int ReadScan(ReadOnlySpan<byte> data, ReadOnlySpan<byte> s, int dataStart)
    {
        if (!_frameSeen) throw new ImageDecodingException("JPEG scan before the frame header");
        if (++_scans > MaxScans) throw new ImageDecodingException($"JPEG has more than {MaxScans} scans");
        if (s.Length < 1) throw new ImageDecodingException("JPEG SOS segment is too short");
        int count = s[0];
        if (count < 1 || count > 4 || s.Length < 1 + 2 * count + 3)
            throw new ImageDecodingException("JPEG SOS segment is malformed");
        var scanComponents = new Component[count];
        for (int i = 0; i < count; i++)
        {
            int id = s[1 + 2 * i], tables = s[2 + 2 * i];
            var c = Array.Find(_components, x => x.Id == id)
                ?? throw new ImageDecodingException($"JPEG scan names unknown component id {id}");
            if (Array.IndexOf(scanComponents, c) >= 0) throw new ImageDecodingException($"JPEG scan names component {id} twice");
            int dc = tables >> 4, ac = tables & 15;
            if (dc > 3 || ac > 3) throw new ImageDecodingException("JPEG scan names an invalid Huffman table");
            c.Dc = _dcTables[dc];
            c.Ac = _acTables[ac];
            if (c.Quant is null)
            {
                c.Quant = _quant[c.QuantIndex] ?? throw new ImageDecodingException($"JPEG component {id} uses quantisation table {c.QuantIndex}, which is not defined");
                c.WideQuant = Array.ConvertAll(c.Quant, q => (int)q);
            }
            scanComponents[i] = c;
        }
        int ss = s[1 + 2 * count], se = s[2 + 2 * count], ah = s[3 + 2 * count] >> 4, al = s[3 + 2 * count] & 15;
        if (_progressive)
        {
            bool valid = ss <= se && se <= 63 && al <= 13 && ah <= 13 && (ss == 0 ? se == 0 : count == 1);
            if (!valid) throw new ImageDecodingException($"JPEG progressive scan has invalid parameters Ss={ss} Se={se} Ah={ah} Al={al}");
        }
        else
        {
            ss = 0; se = 63; ah = al = 0;
        }
        if (count > 1)
        {
            int blocks = scanComponents.Sum(c => c.H * c.V);
            if (blocks > 10) throw new ImageDecodingException($"JPEG interleaved scan has {blocks} blocks per MCU (at most 10 allowed)");
        }
        bool needsDc = ss == 0 && ah == 0, needsAc = se > 0;
        foreach (var c in scanComponents)
        {
            if (needsDc && c.Dc is null) throw new ImageDecodingException($"JPEG scan uses an undefined DC Huffman table for component {c.Id}");
            if (needsAc && c.Ac is null) throw new ImageDecodingException($"JPEG scan uses an undefined AC Huffman table for component {c.Id}");
            c.DcPredictor = 0;
        }
        _eobRun = 0;

        // A sequential scan holding every component (the usual baseline file) is decoded one MCU row at a time
        // straight into sample planes: no whole-image coefficient buffer, and the IDCT runs on cache-warm data.
        bool streaming = !_progressive && count == _components.Length;
        foreach (var c in scanComponents)
        {
            if (c.Plane is not null)
                throw new ImageDecodingException($"JPEG component {c.Id} appears in more than one scan of a sequential image");
            if (streaming)
            {
                if (c.Coefficients.Length > 0)
                    throw new ImageDecodingException($"JPEG component {c.Id} appears in more than one scan of a sequential image");
                c.Plane = GC.AllocateUninitializedArray<byte>(c.BlocksPerLine * 8 * c.HeightInBlocks * 8);
                c.RowCoefficients = new short[c.BlocksPerLine * c.V * 64];
            }
            else if (c.Coefficients.Length == 0)
            {
                c.Coefficients = new short[c.BlocksPerLine * c.BlocksPerColumn * 64];
            }
        }

        var reader = new JpegBitReader(data, dataStart);
        var scan = new ScanParameters(ss, se, ah, al);
        int untilRestart = _restartInterval;
        if (count == 1)
        {
            // Non-interleaved: one block per MCU over the component's own extent (every progressive AC scan).
            var c = scanComponents[0];
            for (int row = 0; row < c.HeightInBlocks; row++)
            {
                var target = streaming ? c.RowCoefficients.AsSpan() : c.Coefficients.AsSpan(row * c.BlocksPerLine * 64);
                for (int col = 0; col < c.WidthInBlocks; col++)
                {
                    if (untilRestart == 0 && _restartInterval > 0)
                    {
                        RestartScan(ref reader, scanComponents);
                        untilRestart = _restartInterval;
                    }
                    DecodeBlock(ref reader, c, target.Slice(col * 64, 64), scan);
                    untilRestart--;
                }
                if (streaming) FlushStreamedRow(c, row, 1);
                CheckComplete(ref reader); // a cut-off file fails here, not after decoding every remaining row from zeros
            }
        }
        else
        {
            for (int mcuRow = 0; mcuRow < _mcusPerColumn; mcuRow++)
            {
                for (int mcuCol = 0; mcuCol < _mcusPerLine; mcuCol++)
                {
                    if (untilRestart == 0 && _restartInterval > 0)
                    {
                        RestartScan(ref reader, scanComponents);
                        untilRestart = _restartInterval;
                    }
                    foreach (var c in scanComponents)
                    {
                        int firstRow = streaming ? 0 : mcuRow * c.V;
                        var target = streaming ? c.RowCoefficients : c.Coefficients;
                        for (int v = 0; v < c.V; v++)
                            for (int h = 0; h < c.H; h++)
                                DecodeBlock(ref reader, c, target.AsSpan(((firstRow + v) * c.BlocksPerLine + mcuCol * c.H + h) * 64, 64), scan);
                    }
                    untilRestart--;
                }
                if (streaming)
                    foreach (var c in scanComponents) FlushStreamedRow(c, mcuRow * c.V, c.V);
                CheckComplete(ref reader);
            }
        }
        CheckComplete(ref reader);
        return reader.Position;
    }

    private void RestartScan(ref JpegBitReader reader, Component[] scanComponents)
    {
        CheckComplete(ref reader);
        reader.Restart();
        foreach (var c in scanComponents) c.DcPredictor = 0;
        _eobRun = 0;
    }

    /// <summary>Inverse-transforms the streamed block rows [firstBlockRow, +rows) into the plane and clears them.</summary>
    private static void FlushStreamedRow(Component c, int firstBlockRow, int rows)
    {
        int stride = c.BlocksPerLine * 8;
        for (int v = 0; v < rows; v++)
        {
            int blockRow = firstBlockRow + v;
            if (blockRow >= c.HeightInBlocks) break;
            for (int bx = 0; bx < c.WidthInBlocks; bx++)
                InverseTransformBlock(c.RowCoefficients.AsSpan((v * c.BlocksPerLine + bx) * 64, 64), c, c.Plane.AsSpan(blockRow * 8 * stride + bx * 8), stride);
        }
        Array.Clear(c.RowCoefficients);
    }

    private static void CheckComplete(ref JpegBitReader reader)
    {
        if (reader.MissingBits > 0)
            throw new ImageDecodingException("JPEG entropy-coded data ends early (file truncated or corrupt)");
    }

    private readonly record struct ScanParameters(int Ss, int Se, int Ah, int Al);

    private void DecodeBlock(ref JpegBitReader r, Component c, Span<short> block, ScanParameters p)
    {
        if (!_progressive)
        {
            r.DecodeBaselineBlock(block, c.Dc!, c.Ac!, ref c.DcPredictor, ZigZag);
            return;
        }

        if (p.Ss == 0)
        {
            if (p.Ah == 0)
            {
                int t = r.Decode(c.Dc!);
                c.DcPredictor += r.Receive(t);
                block[0] = (short)(c.DcPredictor * (1 << p.Al));
            }
            else if (r.Bit() != 0)
            {
                block[0] |= (short)(1 << p.Al);
            }
            return;
        }

        if (p.Ah == 0) r.DecodeAcFirst(block, c.Ac!, p.Ss, p.Se, p.Al, ref _eobRun);
        else r.DecodeAcRefine(block, c.Ac!, p.Ss, p.Se, p.Al, ref _eobRun);
    }
}
