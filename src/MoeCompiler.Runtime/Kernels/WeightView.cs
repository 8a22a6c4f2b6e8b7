using System.Runtime.CompilerServices;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>An unmanaged description of a 2-D weight [rows, columns] of any dtype, for kernel jobs.</summary>
internal readonly unsafe struct WeightView
{
    public readonly byte* Data;
    public readonly float* Scales;
    public readonly DType DType;
    public readonly int Rows;
    public readonly int Columns;
    /// <summary>Columns per int8 scale; equals <see cref="Columns"/> for per-row scales.</summary>
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
        Scales = weight.DType == DType.I8 ? (float*)weight.Scales!.Data : null;
        GroupSize = weight.DType == DType.I8 && weight.GroupSize > 0 ? weight.GroupSize : Columns;
    }

    public int GroupsPerRow => Columns / GroupSize;

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
                    float* rowScales = Scales + (long)row * GroupsPerRow;
                    int i = 0;
                    while (i < count)
                    {
                        int column = start + i;
                        int group = column / GroupSize;
                        int end = Math.Min(count, (group + 1) * GroupSize - start);
                        Widen.I8ToF32(isa, source + i, rowScales[group], destination + i, end - i);
                        i = end;
                    }
                    break;
                }
        }
    }
}
