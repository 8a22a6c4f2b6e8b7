using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Runtime.Threading;

namespace MoeCompiler.Runtime.Backends;

/// <summary>
/// A bf16 Linear weight together with the CPU backend's lossless packed copy of it (<see cref="PackedBF16"/>). The
/// tensor still reads as the original bf16 values through <see cref="Pointer"/> (every generic reader works); the
/// CPU's Linear streams the packed copy instead. The copy is freed with the original's storage.
/// </summary>
internal sealed unsafe class PackedWeightStorage : TensorStorage
{
    private readonly Tensor _original;
    private PackedBF16 _packed;

    private PackedWeightStorage(Tensor original, PackedBF16 packed)
    {
        _original = original;
        _packed = packed;
    }

    /// <summary>Packs <paramref name="weight"/> (bf16 [rows, columns], host) and returns a tensor over the result, or
    /// null when more than one value in <see cref="MaxExceptionShare"/> would be an exception (then the plain kernel
    /// is faster).</summary>
    public static Tensor? Pack(Tensor weight, WorkerPool pool)
    {
        var packed = PackedBF16.Pack(pool, (ushort*)weight.Data, weight.Rows, weight.Columns);
        if (packed.Exceptions * MaxExceptionShare > weight.Length)
        {
            packed.Free();
            return null;
        }
        var storage = new PackedWeightStorage(weight, packed);
        weight.Storage.DisposeWith(storage);
        // The backend streams the packed copy from now on: the file's pages need not stay resident.
        if (weight.Storage is MappedFileStorage mapped) mapped.ReleaseResidentPages(weight.ByteOffset, weight.Length * 2);
        return new Tensor(storage, 0, DType.BF16, weight.Shape, weight.Name);
    }

    /// <summary>1 / the largest share of exceptions worth packing.</summary>
    public const int MaxExceptionShare = 16;

    public PackedBF16 Packed => _packed;

    /// <summary>Whether <paramref name="tensor"/> is the whole packed weight (not a slice or reshaped view of it).</summary>
    public bool Covers(Tensor tensor) =>
        tensor.ByteOffset == 0 && tensor.Rank == 2 && tensor.DType == DType.BF16 && tensor.Rows == _packed.Rows && tensor.Columns == _packed.Columns;

    public override nint Pointer => _original.Data;
    public override long ByteLength => _original.Length * 2;
    public override bool IsReadOnly => true;

    ~PackedWeightStorage() => Release();

    protected override void Release()
    {
        _packed.Free();
        _packed = default;
    }
}
