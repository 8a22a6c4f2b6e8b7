using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Generation;

/// <summary>
/// The data-movement part of a backend (allocation, copies), enough for the generation loop and the fake model,
/// so the generation tests do not depend on the real kernels. Compute operations are outside what these tests
/// exercise and refuse with <see cref="NotSupportedException"/>.
/// </summary>
internal sealed class HostTestBackend : IBackend
{
    public string Name => "host-test";
    public DType KvCacheDType(DType weightDType) => DType.F32;

    public Tensor Allocate(DType dtype, params int[] shape)
    {
        long length = 1;
        foreach (int d in shape) length *= d;
        return new Tensor(new NativeStorage(length * dtype.SizeInBytes()), 0, dtype, shape);
    }

    public Tensor PrepareWeight(Tensor weight) => weight;
    // A span does not keep its tensor alive (see Tensor.Data): an operation keeps its arguments until it is done.
    public void Upload(ReadOnlySpan<float> source, Tensor destination)
    {
        source.CopyTo(destination.AsFloats());
        GC.KeepAlive(destination);
    }

    public void Download(Tensor source, Span<float> destination) => source.ToFloatArray().CopyTo(destination);

    public void Copy(Tensor source, Tensor destination)
    {
        source.AsFloats().CopyTo(destination.AsFloats());
        GC.KeepAlive(source);
        GC.KeepAlive(destination);
    }

    public void CopyRows(Tensor source, int sourceRow, Tensor destination, int destinationRow, int count)
    {
        int width = source.Columns;
        Assert.Equal(width, destination.Columns);
        source.AsFloats().Slice(sourceRow * width, count * width).CopyTo(destination.AsFloats().Slice(destinationRow * width, count * width));
        GC.KeepAlive(source);
        GC.KeepAlive(destination);
    }

    public void Dispose() { }

    private static NotSupportedException Unused(string op) => new($"{op} is not part of the host test backend");
    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y) => throw Unused(nameof(Linear));
    public void Add(Tensor a, Tensor b, Tensor y) => throw Unused(nameof(Add));
    public void Multiply(Tensor a, Tensor b, Tensor y) => throw Unused(nameof(Multiply));
    public void Scale(Tensor x, float scale, Tensor y) => throw Unused(nameof(Scale));
    public void LayerNorm(Tensor x, Tensor weight, Tensor? bias, float epsilon, Tensor y) => throw Unused(nameof(LayerNorm));
    public void RmsNorm(Tensor x, Tensor weight, float epsilon, Tensor y) => throw Unused(nameof(RmsNorm));
    public void Rotary(Tensor x, int heads, int headDim, int rotaryDims, float theta, int startPosition) => throw Unused(nameof(Rotary));
    public void Activate(Tensor x, Activation activation, Tensor y) => throw Unused(nameof(Activate));
    public void SwiGlu(Tensor gate, Tensor up, Tensor y) => throw Unused(nameof(SwiGlu));
    public void Softmax(Tensor x, Tensor y) => throw Unused(nameof(Softmax));
    public void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor y) => throw Unused(nameof(Embedding));
    public void Attention(Tensor q, Tensor k, Tensor v, Tensor y, int heads, int kvHeads, int headDim, bool causal, int queryStart) => throw Unused(nameof(Attention));
    public void GatherRows(Tensor source, ReadOnlySpan<int> rows, Tensor destination) => throw Unused(nameof(GatherRows));
    public void ScatterAddRows(Tensor source, ReadOnlySpan<int> rows, ReadOnlySpan<float> weights, Tensor destination) => throw Unused(nameof(ScatterAddRows));
    public void PatchEmbed(Tensor image, Tensor weight, Tensor? bias, int patch, Tensor y) => throw Unused(nameof(PatchEmbed));
    public void AvgPool2d(Tensor x, int height, int width, int kernel, Tensor y) => throw Unused(nameof(AvgPool2d));
    public void UpsampleBicubic(Tensor x, int outHeight, int outWidth, Tensor y) => throw Unused(nameof(UpsampleBicubic));
}
