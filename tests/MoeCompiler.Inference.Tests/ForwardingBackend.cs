using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests;

/// <summary>
/// A test backend that hands every op to another backend; a test overrides the ops it changes. LinearRows is left to
/// IBackend's default (one Linear per row) unless a subclass implements it.
/// </summary>
internal abstract class ForwardingBackend(IBackend inner) : IBackend
{
    protected IBackend Inner => inner;

    public abstract string Name { get; }
    public virtual DType KvCacheDType(DType weightDType) => inner.KvCacheDType(weightDType);
    public virtual void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y) => inner.Linear(x, weight, bias, y);
    public virtual Tensor Allocate(DType dtype, params int[] shape) => inner.Allocate(dtype, shape);
    public virtual Tensor PrepareWeight(Tensor weight) => inner.PrepareWeight(weight);
    public virtual void Upload(ReadOnlySpan<float> source, Tensor destination) => inner.Upload(source, destination);
    public virtual void Download(Tensor source, Span<float> destination) => inner.Download(source, destination);
    public virtual void Copy(Tensor source, Tensor destination) => inner.Copy(source, destination);
    public virtual void CopyRows(Tensor source, int sourceRow, Tensor destination, int destinationRow, int count) => inner.CopyRows(source, sourceRow, destination, destinationRow, count);
    public virtual void Add(Tensor a, Tensor b, Tensor y) => inner.Add(a, b, y);
    public virtual void Multiply(Tensor a, Tensor b, Tensor y) => inner.Multiply(a, b, y);
    public virtual void Scale(Tensor x, float scale, Tensor y) => inner.Scale(x, scale, y);
    public virtual void Activate(Tensor x, Activation activation, Tensor y) => inner.Activate(x, activation, y);
    public virtual void SwiGlu(Tensor gate, Tensor up, Tensor y) => inner.SwiGlu(gate, up, y);
    public virtual void LayerNorm(Tensor x, Tensor weight, Tensor? bias, float epsilon, Tensor y) => inner.LayerNorm(x, weight, bias, epsilon, y);
    public virtual void RmsNorm(Tensor x, Tensor weight, float epsilon, Tensor y) => inner.RmsNorm(x, weight, epsilon, y);
    public virtual void Rotary(Tensor x, int heads, int headDim, int rotaryDims, float theta, int startPosition) => inner.Rotary(x, heads, headDim, rotaryDims, theta, startPosition);
    public virtual void Softmax(Tensor x, Tensor y) => inner.Softmax(x, y);
    public virtual void Attention(Tensor q, Tensor k, Tensor v, Tensor y, int heads, int kvHeads, int headDim, bool causal, int queryStart) => inner.Attention(q, k, v, y, heads, kvHeads, headDim, causal, queryStart);
    public virtual void GatherRows(Tensor source, ReadOnlySpan<int> rows, Tensor destination) => inner.GatherRows(source, rows, destination);
    public virtual void ScatterAddRows(Tensor source, ReadOnlySpan<int> rows, ReadOnlySpan<float> weights, Tensor destination) => inner.ScatterAddRows(source, rows, weights, destination);
    public virtual void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor y) => inner.Embedding(table, ids, y);
    public virtual void PatchEmbed(Tensor image, Tensor weight, Tensor? bias, int patch, Tensor y) => inner.PatchEmbed(image, weight, bias, patch, y);
    public virtual void AvgPool2d(Tensor x, int height, int width, int kernel, Tensor y) => inner.AvgPool2d(x, height, width, kernel, y);
    public virtual void UpsampleBicubic(Tensor x, int outHeight, int outWidth, Tensor y) => inner.UpsampleBicubic(x, outHeight, outWidth, y);
    public virtual void Dispose() => inner.Dispose();
}
