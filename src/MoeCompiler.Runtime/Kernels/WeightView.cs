using System.Runtime.CompilerServices;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>An unmanaged description of a 2-D weight [rows, columns] of any dtype, for kernel jobs.</summary>
internal readonly unsafe struct WeightView
{
    public readonly byte* Data;
    /// <summary>f32 scales of a quantised weight, or null when they are bf16 (<see cref="ScalesBF16"/>).</summary>
    public readonly float* Scales;
    public readonly ushort* ScalesBF16;
    public readonly DType DType;
    public readonly int Rows;
    public readonly int Columns;
    /// <summary>Columns per scale of a quantised weight; equals <see cref="Columns"/> for per-row scales.</summary>
    public readonly int GroupSize;
    /// <summary>The backend's packed copy of a bf16 weight (<see cref="PackedBF16.IsEmpty"/> when there is none).</summary>
    public readonly PackedBF16 Packed;

    public WeightView(Tensor weight, PackedBF16 packed = default)
    {
        Packed = packed;
        Data = (byte*)weight.Data;
        DType = weight.DType;
        Rows = weight.Rows;
        Columns = weight.Columns;
        bool quantized = weight.DType.IsQuantized();
        Scales = quantized && weight.Scales!.DType == DType.F32 ? (float*)weight.Scales.Data : null;
        ScalesBF16 = quantized && weight.Scales!.DType == DType.BF16 ? (ushort*)weight.Scales.Data : null;
        GroupSize = quantized && weight.GroupSize > 0 ? weight.GroupSize : Columns;
    }

    public int GroupsPerRow => Columns / GroupSize;

    /// <summary>Bytes a matrix-vector product reads per weight row: the packed form when there is one, else the
    /// values and the row's scales.</summary>
    public long RowBytes
    {
        get
        {
            if (!Packed.IsEmpty) return Packed.StreamedBytes / Math.Max(1, Rows);
            long scales = ScalesBF16 != null ? 2 : Scales != null ? 4 : 0;
            return DType.ByteCount(Columns) + scales * GroupsPerRow;
        }
    }

    /// <summary>The scales of one row, for kernels that walk its groups.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public RowScales RowScales(int row)
    {
        long first = (long)row * GroupsPerRow;
        return new RowScales(Scales != null ? Scales + first : null, ScalesBF16 != null ? ScalesBF16 + first : null, GroupsPerRow);
    }

    /// <summary>Scale of group <paramref name="group"/> of <paramref name="row"/> (quantised weights).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float Scale(int row, int group)
    {
        long index = (long)row * GroupsPerRow + group;
        return Scales != null ? Scales[index] : NumberFormats.BF16ToFloat(ScalesBF16[index]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float* F32Row(int row) => (float*)Data + (long)row * Columns;

    /// <summary>Row <paramref name="row"/>, columns [start, start+count) as f32 into <paramref name="destination"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void DecodeRow(int row, int start, int count, float* destination, KernelIsa isa)
    {
        if (!Packed.IsEmpty)
        {
            Packed.DecodeRow(row, start, count, destination, isa);
            return;
        }
        long offset = (long)row * Columns + start;
        switch (DType)
        {
            case DType.F32:
                Buffer.MemoryCopy((float*)Data + offset, destination, count * 4L, count * 4L);
                break;
            case DType.BF16:
                Widen.BF16ToF32(isa, (ushort*)Data + offset, destination, count);
                break;
            case DType.F16:
                System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(
                    new ReadOnlySpan<Half>((Half*)Data + offset, count), new Span<float>(destination, count));
                break;
            case DType.I8:
                {
                    sbyte* source = (sbyte*)Data + offset;
                    int i = 0;
                    while (i < count)
                    {
                        int column = start + i;
                        int group = column / GroupSize;
                        int end = Math.Min(count, (group + 1) * GroupSize - start);
                        Widen.I8ToF32(isa, source + i, Scale(row, group), destination + i, end - i);
                        i = end;
                    }
                    break;
                }
            case DType.Q4:
                {
                    byte* rowData = Data + (long)row * Columns / 2;
                    float* group = stackalloc float[NumberFormats.Q4Group];
                    int column = start, end = start + count;
                    while (column < end)
                    {
                        int g = column / NumberFormats.Q4Group, first = g * NumberFormats.Q4Group;
                        bool whole = column == first && end >= first + NumberFormats.Q4Group;
                        float* target = whole ? destination + (column - start) : group;
                        Widen.Q4ToF32(isa, rowData + first / 2, Scale(row, g), target);
                        int take = Math.Min(end, first + NumberFormats.Q4Group) - column;
                        if (!whole) Buffer.MemoryCopy(group + (column - first), destination + (column - start), take * 4L, take * 4L);
                        column += take;
                    }
                    break;
                }
        }
    }
}

/// <summary>One row's group scales, f32 or bf16 (exactly one pointer is set).</summary>
internal readonly unsafe struct RowScales(float* f32, ushort* bf16, int groups)
{
    public readonly float* F32 = f32;
    public readonly ushort* BF16 = bf16;
    public readonly int Groups = groups;

    public float this[int group]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => BF16 != null ? BitConverter.Int32BitsToSingle(BF16[group] << 16) : F32[group];
    }
}
