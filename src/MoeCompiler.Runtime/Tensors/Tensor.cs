using System.Runtime.InteropServices;

namespace MoeCompiler.Runtime.Tensors;

/// <summary>
/// A dense, contiguous, row-major tensor: a dtype, a shape and a window onto a <see cref="TensorStorage"/>.
/// Views (<see cref="Reshape"/>, <see cref="SliceRows"/>) share the storage and never copy.
/// Quantised weights (int8, q4) carry f32 or bf16 <see cref="Scales"/>: shape [rows] (per row, int8 only) or
/// [rows, columns / GroupSize] (per group); docs/quantization.md has the layouts.
/// </summary>
public sealed unsafe class Tensor
{
    private readonly int[] _shape;

    public Tensor(TensorStorage storage, long byteOffset, DType dtype, ReadOnlySpan<int> shape, string? name = null,
        Tensor? scales = null, int groupSize = 0)
    {
        ArgumentNullException.ThrowIfNull(storage);
        _shape = shape.ToArray();
        long length = 1;
        foreach (int d in _shape)
        {
            if (d < 0) throw new ArgumentException($"negative dimension in shape {FormatShape(_shape)}", nameof(shape));
            length = checked(length * d);
        }
        Length = length;
        if (dtype == DType.Q4 && (_shape.Length == 0 || _shape[^1] % 2 != 0))
            throw new ArgumentException($"Q4 tensor {name ?? "?"} {FormatShape(_shape)} needs an even number of columns", nameof(shape));
        ByteLength = dtype.ByteCount(length);
        if (byteOffset < 0 || byteOffset > storage.ByteLength || ByteLength > storage.ByteLength - byteOffset)
            throw new ArgumentOutOfRangeException(nameof(byteOffset),
                $"tensor {name ?? "?"} {dtype} {FormatShape(_shape)} at offset {byteOffset} does not fit in a storage of {storage.ByteLength} bytes");
        if (dtype.IsQuantized() && scales is null) throw new ArgumentException($"{dtype} tensors need scales", nameof(scales));
        Storage = storage;
        ByteOffset = byteOffset;
        DType = dtype;
        Name = name;
        Scales = scales;
        GroupSize = groupSize;
    }

    public TensorStorage Storage { get; }
    public long ByteOffset { get; }
    public DType DType { get; }
    /// <summary>Checkpoint key or a debug name, used in error messages.</summary>
    public string? Name { get; }
    public ReadOnlySpan<int> Shape => _shape;
    public int Rank => _shape.Length;
    public long Length { get; }
    public long ByteLength { get; }
    public Tensor? Scales { get; }
    /// <summary>0 means one scale per row; otherwise the number of columns sharing a scale.</summary>
    public int GroupSize { get; }

    public int Dim(int axis) => _shape[axis < 0 ? _shape.Length + axis : axis];

    /// <summary>Last dimension (1 for a scalar).</summary>
    public int Columns => _shape.Length == 0 ? 1 : _shape[^1];

    /// <summary>Product of all dimensions but the last.</summary>
    public int Rows
    {
        get
        {
            long rows = 1;
            for (int i = 0; i < _shape.Length - 1; i++) rows *= _shape[i];
            return checked((int)rows);
        }
    }

    /// <summary>
    /// Address of the first element. The storage's memory is freed by a finalizer once nothing references the tensor,
    /// so the address (like a span from <see cref="AsSpan{T}"/>) is valid only while the tensor is still referenced:
    /// code that reads through it after its last use of the tensor calls <see cref="GC.KeepAlive"/> on the tensor
    /// when done (every backend operation does this for its arguments).
    /// </summary>
    public nint Data => Storage.Pointer + (nint)ByteOffset;
    public bool IsHost => Storage.IsHost;

    /// <summary>Host view of the elements; <typeparamref name="T"/> must match the dtype's size. Valid only while the
    /// tensor is referenced (see <see cref="Data"/>).</summary>
    public Span<T> AsSpan<T>() where T : unmanaged
    {
        if (!IsHost) throw new InvalidOperationException($"tensor {Name} lives on a device; download it first");
        if (DType == DType.Q4 || sizeof(T) != DType.SizeInBytes())
            throw new InvalidOperationException($"tensor {Name} is {DType}; cannot view it as {typeof(T).Name}");
        return new Span<T>((void*)Data, checked((int)Length));
    }

    public Span<float> AsFloats() => AsSpan<float>();

    public Tensor Reshape(params int[] shape)
    {
        long n = 1;
        foreach (int d in shape) n = checked(n * d);
        if (n != Length) throw new ArgumentException($"cannot reshape {FormatShape(_shape)} to {FormatShape(shape)}");
        return new Tensor(Storage, ByteOffset, DType, shape, Name, Scales, GroupSize);
    }

    /// <summary>Rows [start, start+count) of the first dimension, as a view.</summary>
    public Tensor SliceRows(int start, int count)
    {
        if (Rank == 0) throw new InvalidOperationException("cannot slice a scalar");
        if ((uint)start > (uint)_shape[0] || (uint)count > (uint)(_shape[0] - start))
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {start + count}) outside {FormatShape(_shape)}");
        long rowElements = _shape[0] == 0 ? 0 : Length / _shape[0];
        var shape = _shape.ToArray();
        shape[0] = count;
        Tensor? scales = Scales?.Rank >= 1 && Scales.Dim(0) == _shape[0] ? Scales.SliceRows(start, count) : Scales;
        return new Tensor(Storage, ByteOffset + DType.ByteCount(start * rowElements), DType, shape, Name, scales, GroupSize);
    }

    public static Tensor Allocate(DType dtype, params int[] shape)
    {
        long n = 1;
        foreach (int d in shape) n = checked(n * d);
        return new Tensor(new NativeStorage(dtype.ByteCount(n)), 0, dtype, shape);
    }

    /// <summary>A new f32 tensor holding a copy of <paramref name="data"/>.</summary>
    public static Tensor FromFloats(ReadOnlySpan<float> data, params int[] shape)
    {
        var t = Allocate(DType.F32, shape);
        if (t.Length != data.Length) throw new ArgumentException($"{data.Length} values for shape {FormatShape(shape)}");
        data.CopyTo(t.AsFloats());
        return t;
    }

    /// <summary>Every element as f32 (dequantised for int8). For tests and tools, not hot paths.</summary>
    public float[] ToFloatArray()
    {
        var result = new float[Length];
        switch (DType)
        {
            case DType.F32: AsSpan<float>().CopyTo(result); break;
            case DType.BF16:
                {
                    var src = AsSpan<ushort>();
                    for (int i = 0; i < src.Length; i++) result[i] = BitConverter.Int32BitsToSingle(src[i] << 16);
                    break;
                }
            case DType.F16:
                {
                    var src = AsSpan<Half>();
                    for (int i = 0; i < src.Length; i++) result[i] = (float)src[i];
                    break;
                }
            case DType.I8:
            case DType.Q4:
                {
                    int cols = Columns;
                    for (int row = 0; row < Rows; row++) Kernels.NumberFormats.ReadRow(this, row, result.AsSpan(row * cols, cols));
                    break;
                }
        }
        GC.KeepAlive(this);
        return result;
    }

    public override string ToString() => $"{Name ?? "tensor"} {DType} {FormatShape(_shape)}";

    public static string FormatShape(ReadOnlySpan<int> shape)
    {
        var parts = new string[shape.Length];
        for (int i = 0; i < shape.Length; i++) parts[i] = shape[i].ToString(System.Globalization.CultureInfo.InvariantCulture);
        return "[" + string.Join(", ", parts) + "]";
    }
}
