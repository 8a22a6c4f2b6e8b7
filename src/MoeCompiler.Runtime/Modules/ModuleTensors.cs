using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

/// <summary>Shared checks and small conversions for the modules.</summary>
internal static class ModuleTensors
{
    /// <summary>
    /// Small parameter vectors (biases, norm weights, embeddings added to activations) are kept in f32 so that
    /// every elementwise op sees f32 on both sides; the conversion from bf16/f16 is exact.
    /// </summary>
    public static Tensor PrepareF32(IBackend backend, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.DType == DType.F32 || !tensor.IsHost) return backend.PrepareWeight(tensor);
        var shape = tensor.Shape.ToArray();
        var f32 = new Tensor(new NativeStorage(tensor.Length * sizeof(float), zero: false), 0, DType.F32, shape, tensor.Name);
        tensor.ToFloatArray().AsSpan().CopyTo(f32.AsFloats());
        return backend.PrepareWeight(f32);
    }

    public static string Describe(Tensor tensor) => tensor.ToString();

    public static void RequireRank(Tensor tensor, int rank, string what)
    {
        if (tensor.Rank != rank)
            throw new ArgumentException($"{what}: expected a rank-{rank} tensor, got {Describe(tensor)}");
    }

    public static void RequireColumns(Tensor x, int columns, string what)
    {
        if (x.Rank != 2 || x.Columns != columns)
            throw new ArgumentException($"{what}: expected input [rows, {columns}], got {Describe(x)}");
    }

    public static void Release(Tensor? tensor) => TensorLifetime.Release(tensor);

    private static float[] s_zeros = new float[4096];

    /// <summary>Sets an activation to zero through the backend (works for device tensors too).</summary>
    public static void Zero(IBackend backend, Tensor tensor)
    {
        long n = tensor.Length;
        var zeros = s_zeros;
        if (zeros.Length < n)
        {
            zeros = new float[checked((int)n)];
            s_zeros = zeros; // a larger all-zero array; readers of the old one are unaffected
        }
        backend.Upload(zeros.AsSpan(0, (int)n), tensor);
    }
}

/// <summary>Early release of intermediate activations, for modules and generated code.</summary>
public static class TensorLifetime
{
    /// <summary>
    /// Frees an intermediate activation now instead of waiting for the finaliser (native memory is invisible to
    /// the GC, so a prefill would otherwise pile up gigabytes before a collection). Only a tensor that owns its
    /// whole native storage is freed; views, mapped weights and other storages are left alone. The tensor (and
    /// any view of it) must not be used afterwards.
    /// </summary>
    public static void Release(Tensor? tensor)
    {
        if (tensor is null) return;
        if (tensor.ByteOffset == 0 && tensor.ByteLength == tensor.Storage.ByteLength && tensor.Storage is NativeStorage)
            tensor.Storage.Dispose();
    }
}
