using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MoeCompiler.Runtime.Threading;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>
/// A lossless 12-bit form of a bf16 matrix [rows, columns], so that a decode step streams 25% fewer weight bytes.
/// A bf16 value is a high byte (sign and the top 7 exponent bits) and a low byte (the last exponent bit and the 7
/// mantissa bits). Weights of one row, trained or randomly initialised, span few binades, so a row uses few distinct
/// high bytes: each row keeps a table of its 15 most frequent ones and a 4-bit code per weight, plus the low bytes.
/// A weight whose high byte is not in its row's table is an exception: it is stored with code 15 and low byte 0
/// (which decode to +0) and its exact value goes to the row's exception list, added after the vector part of a dot
/// product. Columns are packed in blocks of 64 whose bytes are laid out so that the AVX-512 byte and word unpacks of
/// <see cref="Dot"/> produce them in natural order; the columns after the last full block stay raw bf16.
/// </summary>
/// <remarks>
/// For a row without exceptions <see cref="Dot"/> performs exactly the multiply-adds of the plain bf16 kernel in the
/// same order (bitwise equal results); exceptions are added one by one after the vector sum.
/// </remarks>
internal readonly unsafe partial struct PackedBF16
{
    public const int Block = 64;
    public const int ExceptionCode = 15;
    public const int TableEntries = 15;

    public readonly int Rows;
    public readonly int Columns;
    /// <summary>Full 64-column blocks per row.</summary>
    public readonly int Blocks;
    /// <summary>Columns after the last full block, stored raw.</summary>
    public readonly int TailColumns;
    private readonly byte* _tables;          // [rows, 16]: high bytes by code; entry 15 is 0
    private readonly byte* _codes;           // [rows, blocks, 32]: code of storage position p in nibble p / 32 of byte p % 32
    private readonly byte* _low;             // [rows, blocks, 64]: low bytes by storage position
    private readonly ushort* _tail;          // [rows, tail columns]
    private readonly int* _exceptionStart;   // [rows + 1]
    private readonly int* _exceptionColumn;  // [exceptions], ascending within a row
    private readonly ushort* _exceptionValue;
    /// <summary>One native block holding every array above.</summary>
    public readonly void* Memory;
    public readonly long ByteLength;

    private PackedBF16(int rows, int columns, long exceptions, void* memory, long byteLength)
    {
        Rows = rows;
        Columns = columns;
        Blocks = columns / Block;
        TailColumns = columns % Block;
        Memory = memory;
        ByteLength = byteLength;
        byte* p = (byte*)memory;
        _codes = p; p += (long)rows * Blocks * 32;
        _low = p; p += (long)rows * Blocks * Block;
        _tables = p; p += (long)rows * 16;
        _tail = (ushort*)p; p += (long)rows * TailColumns * 2;
        p = (byte*)(((nint)p + 3) & ~(nint)3);
        _exceptionStart = (int*)p; p += (rows + 1L) * 4;
        _exceptionColumn = (int*)p; p += exceptions * 4;
        _exceptionValue = (ushort*)p;
    }

    public bool IsEmpty => Memory == null;
    public long Exceptions => IsEmpty ? 0 : _exceptionStart[Rows];

    /// <summary>Bytes a full pass over the matrix reads (codes, low bytes, tables, tail, exceptions).</summary>
    public long StreamedBytes => (long)Rows * (Blocks * 96L + 16 + TailColumns * 2) + Exceptions * 6;

    private static long SizeOf(int rows, int columns, long exceptions)
    {
        int blocks = columns / Block, tail = columns % Block;
        long bytes = (long)rows * blocks * 96 + rows * 16L + rows * (long)tail * 2;
        return ((bytes + 3) & ~3L) + (rows + 1L) * 4 + exceptions * 6;
    }

    /// <summary>Storage position of column <c>e</c> (0..63) of a block, so that the unpacks in <see cref="Dot"/> yield the
    /// columns in order: column e = 16v + 4l + j sits at 16l + 4v + j. The permutation is its own inverse, so it also
    /// gives the column stored at a position.</summary>
    private static ReadOnlySpan<byte> PositionOf =>
    [
        0, 1, 2, 3, 16, 17, 18, 19, 32, 33, 34, 35, 48, 49, 50, 51,
        4, 5, 6, 7, 20, 21, 22, 23, 36, 37, 38, 39, 52, 53, 54, 55,
        8, 9, 10, 11, 24, 25, 26, 27, 40, 41, 42, 43, 56, 57, 58, 59,
        12, 13, 14, 15, 28, 29, 30, 31, 44, 45, 46, 47, 60, 61, 62, 63,
    ];

    /// <summary>Packs <paramref name="rows"/> × <paramref name="columns"/> bf16 values (row-major) using the pool.</summary>
    public static PackedBF16 Pack(WorkerPool pool, ushort* source, int rows, int columns)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(columns);
        int blocks = columns / Block;
        // Pass 1: each row's table and exception count.
        var tables = (byte*)NativeMemory.Alloc((nuint)Math.Max(1L, rows * 16L));
        var counts = (int*)NativeMemory.Alloc((nuint)Math.Max(1L, rows * 4L));
        try
        {
            var plan = new PlanJob { Source = source, Columns = columns, Blocks = blocks, Tables = tables, Counts = counts, Rows = rows };
            pool.Run((rows + RowsPerTask - 1) / RowsPerTask, ref plan);
            long exceptions = 0;
            for (int r = 0; r < rows; r++) exceptions += counts[r];
            long bytes = SizeOf(rows, columns, exceptions);
            void* memory = NativeMemory.AlignedAlloc((nuint)Math.Max(1L, bytes), 64);
            var packed = new PackedBF16(rows, columns, exceptions, memory, bytes);
            Buffer.MemoryCopy(tables, packed._tables, rows * 16L, rows * 16L);
            long start = 0;
            for (int r = 0; r < rows; r++)
            {
                packed._exceptionStart[r] = checked((int)start);
                start += counts[r];
            }
            packed._exceptionStart[rows] = checked((int)start);
            // Pass 2: codes, low bytes, tails and exceptions.
            var encode = new EncodeJob { Source = source, Packed = packed };
            pool.Run((rows + RowsPerTask - 1) / RowsPerTask, ref encode);
            return packed;
        }
        finally
        {
            NativeMemory.Free(tables);
            NativeMemory.Free(counts);
        }
    }

    public void Free()
    {
        if (Memory != null) NativeMemory.AlignedFree(Memory);
    }

    private const int RowsPerTask = 64;

    private struct PlanJob : IParallelJob
    {
        public ushort* Source;
        public int Columns, Blocks, Rows;
        public byte* Tables;
        public int* Counts;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            // Four interleaved histograms, so that runs of equal high bytes do not serialise on one counter.
            int* counters = stackalloc int[4 * 256];
            int* histogram = counters;
            byte* distinct = stackalloc byte[256];
            int end = Math.Min(Rows, (index + 1) * RowsPerTask);
            for (int r = index * RowsPerTask; r < end; r++)
            {
                new Span<int>(counters, 4 * 256).Clear();
                ushort* row = Source + (long)r * Columns;
                int packedColumns = Blocks * Block;
                for (int c = 0; c < packedColumns; c += 4)
                {
                    counters[row[c] >> 8]++;
                    counters[256 + (row[c + 1] >> 8)]++;
                    counters[512 + (row[c + 2] >> 8)]++;
                    counters[768 + (row[c + 3] >> 8)]++;
                }
                for (int h = 0; h < 256; h += Vector256<int>.Count)
                    (Vector256.Load(counters + h) + Vector256.Load(counters + 256 + h) + Vector256.Load(counters + 512 + h) +
                     Vector256.Load(counters + 768 + h)).Store(histogram + h);
                int kinds = 0;
                for (int h = 0; h < 256; h++)
                    if (histogram[h] > 0) distinct[kinds++] = (byte)h;
                byte* table = Tables + r * 16L;
                int covered = 0;
                for (int entry = 0; entry < TableEntries; entry++)
                {
                    // The most frequent remaining high byte (lowest value on ties); once all are taken, entries repeat 0.
                    int best = -1;
                    for (int i = 0; i < kinds; i++)
                    {
                        int h = distinct[i];
                        if (histogram[h] > 0 && (best < 0 || histogram[h] > histogram[best])) best = h;
                    }
                    if (best < 0)
                    {
                        table[entry] = 0;
                        continue;
                    }
                    table[entry] = (byte)best;
                    covered += histogram[best];
                    histogram[best] = 0;
                }
                table[ExceptionCode] = 0;
                Counts[r] = packedColumns - covered;
            }
        }
    }

    private struct EncodeJob : IParallelJob
    {
        public ushort* Source;
        public PackedBF16 Packed;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            var p = Packed;
            byte* codeOf = stackalloc byte[256];
            int end = Math.Min(p.Rows, (index + 1) * RowsPerTask);
            for (int r = index * RowsPerTask; r < end; r++)
            {
                ushort* row = Source + (long)r * p.Columns;
                byte* table = p._tables + r * 16L;
                new Span<byte>(codeOf, 256).Fill(ExceptionCode);
                // Later entries first, so a repeated 0 (an unused entry) maps to its first index.
                for (int entry = TableEntries - 1; entry >= 0; entry--) codeOf[table[entry]] = (byte)entry;
                int exception = p._exceptionStart[r];
                for (int b = 0; b < p.Blocks; b++)
                {
                    byte* codes = p._codes + ((long)r * p.Blocks + b) * 32;
                    byte* low = p._low + ((long)r * p.Blocks + b) * Block;
                    if (Avx512Vbmi.IsSupported)
                    {
                        EncodeBlock(row + b * Block, codeOf, codes, low, out ulong exceptions);
                        for (; exceptions != 0; exceptions &= exceptions - 1)
                        {
                            int column = b * Block + BitOperations.TrailingZeroCount(exceptions);
                            p._exceptionColumn[exception] = column;
                            p._exceptionValue[exception] = row[column];
                            exception++;
                        }
                        continue;
                    }
                    new Span<byte>(codes, 32).Clear();
                    for (int e = 0; e < Block; e++)
                    {
                        int column = b * Block + e;
                        ushort value = row[column];
                        int code = codeOf[value >> 8];
                        int position = PositionOf[e];
                        if (code == ExceptionCode)
                        {
                            p._exceptionColumn[exception] = column;
                            p._exceptionValue[exception] = value;
                            exception++;
                            low[position] = 0;
                        }
                        else
                        {
                            low[position] = (byte)value;
                        }
                        codes[position & 31] |= (byte)(code << (position >> 5 << 2));
                    }
                }
                int packedColumns = p.Blocks * Block;
                for (int c = 0; c < p.TailColumns; c++) p._tail[(long)r * p.TailColumns + c] = row[packedColumns + c];
                if (exception != p._exceptionStart[r + 1])
                    throw new InvalidOperationException($"packed bf16 row {r}: {exception - p._exceptionStart[r]} exceptions, planned {p._exceptionStart[r + 1] - p._exceptionStart[r]}");
            }
        }
    }

    /// <summary>One block of 64 bf16 values to its codes and low bytes (AVX-512 VBMI); the mask marks the
    /// columns that are exceptions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void EncodeBlock(ushort* values, byte* codeOf, byte* codes, byte* low, out ulong exceptions)
    {
        var first = Vector512.Load(values);
        var second = Vector512.Load(values + 32);
        var lowBytes = Vector512.Create(Avx512BW.ConvertToVector256Byte(first), Avx512BW.ConvertToVector256Byte(second));
        var highBytes = Vector512.Create(Avx512BW.ConvertToVector256Byte(Vector512.ShiftRightLogical(first, 8)),
            Avx512BW.ConvertToVector256Byte(Vector512.ShiftRightLogical(second, 8)));
        // codeOf is a 256-entry byte table: two 128-entry lookups, chosen by the high byte's top bit.
        var codeLow = Avx512Vbmi.PermuteVar64x8x2(Vector512.Load(codeOf), highBytes, Vector512.Load(codeOf + 64));
        var codeHigh = Avx512Vbmi.PermuteVar64x8x2(Vector512.Load(codeOf + 128), highBytes, Vector512.Load(codeOf + 192));
        var code = Vector512.ConditionalSelect(Vector512.LessThan(highBytes.AsSByte(), Vector512<sbyte>.Zero).AsByte(), codeHigh, codeLow);
        var isException = Vector512.Equals(code, Vector512.Create((byte)ExceptionCode));
        exceptions = isException.ExtractMostSignificantBits();
        lowBytes = Vector512.AndNot(lowBytes, isException);
        fixed (byte* columnAt = PositionOf)
        {
            var order = Vector512.Load(columnAt);
            Avx512Vbmi.PermuteVar64x8(lowBytes, order).Store(low);
            var stored = Avx512Vbmi.PermuteVar64x8(code, order);
            (stored.GetLower() | Vector256.ShiftLeft(stored.GetUpper().AsUInt16(), 4).AsByte()).Store(codes);
        }
    }

    /// <summary>Σ x[c]·w[row, c] (AVX-512 only): the plain bf16 kernel's multiply-adds, then the row's exceptions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public float Dot(float* x, int row)
    {
        var table = RowTable(row);
        byte* codes = _codes + (long)row * Blocks * 32;
        byte* low = _low + (long)row * Blocks * Block;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        var shifts = CodeShifts;
        int i = 0;
        for (int b = 0; b < Blocks; b++, i += Block, codes += 32, low += Block)
        {
            UnpackBlock(table, shifts, codes, low, out var w0, out var w1, out var w2, out var w3);
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), w0, a0);
            a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 16), w1, a1);
            a2 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 32), w2, a2);
            a3 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i + 48), w3, a3);
        }
        ushort* tail = _tail + (long)row * TailColumns - i;
        for (; i + 16 <= Columns; i += 16) a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(x + i), Gemm.WidenBF16(tail + i), a0);
        float sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        for (; i < Columns; i++) sum = MathF.FusedMultiplyAdd(x[i], NumberFormats.BF16ToFloat(tail[i]), sum);
        for (int e = _exceptionStart[row], end = _exceptionStart[row + 1]; e < end; e++)
            sum = MathF.FusedMultiplyAdd(x[_exceptionColumn[e]], NumberFormats.BF16ToFloat(_exceptionValue[e]), sum);
        return sum;
    }

    /// <summary>Word shifts that turn the 32 code bytes, broadcast to both halves, into low nibbles (first half) and
    /// high nibbles (second half).</summary>
    internal static Vector512<ushort> CodeShifts
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create(
        (ushort)0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4);
    }

    /// <summary>The row's 16 high bytes in each 128-bit lane, for <c>vpshufb</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector512<byte> RowTable(int row)
    {
        var table = Vector128.Load(_tables + row * 16L);
        var half = Vector256.Create(table, table);
        return Vector512.Create(half, half);
    }

    /// <summary>One block as four f32 vectors of 16 consecutive columns (exceptions as +0): each code picks its
    /// high byte from the table, byte unpacks join high and low bytes into bf16, word unpacks against zero widen them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void UnpackBlock(Vector512<byte> table, Vector512<ushort> shifts, byte* codes, byte* low,
        out Vector512<float> w0, out Vector512<float> w1, out Vector512<float> w2, out Vector512<float> w3)
    {
        // The 32 code bytes loaded into both halves (a broadcast load, no shuffle; inserting two halves instead would
        // chain every block's index on the previous one's register), the second half shifted right by 4 per word.
        var both = Avx512F.BroadcastVector256ToVector512((ulong*)codes).AsUInt16();
        var index = Avx512BW.ShiftRightLogicalVariable(both, shifts).AsByte() & Vector512.Create((byte)0x0F);
        var high = Avx512BW.Shuffle(table, index);
        var lowBytes = Vector512.Load(low);
        var words0 = Avx512BW.UnpackLow(lowBytes, high).AsUInt16();
        var words1 = Avx512BW.UnpackHigh(lowBytes, high).AsUInt16();
        var zero = Vector512<ushort>.Zero;
        w0 = Avx512BW.UnpackLow(zero, words0).AsSingle();
        w1 = Avx512BW.UnpackHigh(zero, words0).AsSingle();
        w2 = Avx512BW.UnpackLow(zero, words1).AsSingle();
        w3 = Avx512BW.UnpackHigh(zero, words1).AsSingle();
    }

    /// <summary>Columns of <paramref name="row"/> stored as exceptions, ascending.</summary>
    public ReadOnlySpan<int> ExceptionColumns(int row) =>
        new(_exceptionColumn + _exceptionStart[row], _exceptionStart[row + 1] - _exceptionStart[row]);

    /// <summary>The exact bf16 value of one element (reference path for tests and odd ranges).</summary>
    public ushort Get(int row, int column)
    {
        if ((uint)row >= (uint)Rows || (uint)column >= (uint)Columns) throw new ArgumentOutOfRangeException(nameof(column));
        int packedColumns = Blocks * Block;
        if (column >= packedColumns) return _tail[(long)row * TailColumns + column - packedColumns];
        int b = column / Block, position = PositionOf[column % Block];
        int code = (_codes[((long)row * Blocks + b) * 32 + (position & 31)] >> (position >> 5 << 2)) & 0x0F;
        if (code == ExceptionCode)
        {
            for (int e = _exceptionStart[row], end = _exceptionStart[row + 1]; e < end; e++)
                if (_exceptionColumn[e] == column) return _exceptionValue[e];
            throw new InvalidOperationException($"packed bf16 row {row}: column {column} has the exception code but no exception");
        }
        return (ushort)(_tables[row * 16L + code] << 8 | _low[((long)row * Blocks + b) * Block + position]);
    }

    /// <summary>Row <paramref name="row"/>, columns [start, start+count), as f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void DecodeRow(int row, int start, int count, float* destination, KernelIsa isa)
    {
        int end = start + count, packedColumns = Blocks * Block;
        int column = start;
        if (isa == KernelIsa.Avx512)
        {
            float* block = stackalloc float[Block];
            while (column < Math.Min(end, packedColumns))
            {
                int b = column / Block, first = b * Block;
                bool whole = column == first && end >= first + Block;
                float* target = whole ? destination + (column - start) : block;
                DecodeBlock(row, b, target);
                int take = Math.Min(end, first + Block) - column;
                if (!whole) Buffer.MemoryCopy(block + (column - first), destination + (column - start), take * 4L, take * 4L);
                column += take;
            }
            for (int e = _exceptionStart[row], last = _exceptionStart[row + 1]; e < last; e++)
            {
                int c = _exceptionColumn[e];
                if (c >= start && c < end) destination[c - start] = NumberFormats.BF16ToFloat(_exceptionValue[e]);
            }
        }
        else
        {
            for (; column < Math.Min(end, packedColumns); column++) destination[column - start] = NumberFormats.BF16ToFloat(Get(row, column));
        }
        if (column < end)
            Widen.BF16ToF32(isa, _tail + (long)row * TailColumns + (column - packedColumns), destination + (column - start), end - column);
    }

    /// <summary>One block in natural column order (exceptions as +0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void DecodeBlock(int row, int b, float* destination)
    {
        long offset = (long)row * Blocks + b;
        UnpackBlock(RowTable(row), CodeShifts, _codes + offset * 32, _low + offset * Block, out var w0, out var w1, out var w2, out var w3);
        w0.Store(destination);
        w1.Store(destination + 16);
        w2.Store(destination + 32);
        w3.Store(destination + 48);
    }
}
