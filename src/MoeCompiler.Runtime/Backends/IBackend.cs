using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Backends;

/// <summary>
/// The seam between the typed modules (generated code and <c>MoeCompiler.Runtime.Modules</c>) and the machine.
/// Every operation works on row-major tensors created by this backend (activations, f32) or prepared by it
/// (weights, any dtype). Shapes use PyTorch conventions: a Linear weight is [out, in].
/// Results must not depend on the number of threads.
/// An operation keeps its tensor arguments referenced until it no longer touches their memory (a tensor's memory is
/// freed by a finalizer once unreachable), so a temporary may be passed as an argument and dropped: the CPU backend
/// keeps them until it returns; the CUDA backend until the work is queued, after which stream order protects the
/// reuse of freed device blocks.
/// </summary>
public interface IBackend : IDisposable
{
    string Name { get; }

    /// <summary>
    /// What this backend keeps cached keys and values in for an LLM whose weights are stored as
    /// <paramref name="weightDType"/> (the default of <see cref="Modules.KvCache"/> in generation). f32 is always
    /// supported; the CPU keeps bf16 for weights that are not f32, which halves the cache bytes every decode step reads.
    /// </summary>
    DType KvCacheDType(DType weightDType);

    /// <summary>
    /// Runs one decode step (embedding of the new token through the logits). A GPU backend may record the step's
    /// device work and launch it as one unit (CUDA graphs); the step must then only queue device work and change
    /// no host state that a second run would change again. The default runs it.
    /// </summary>
    void RunDecodeStep(Action step) => step();

    /// <summary>A new activation or scratch tensor owned by this backend (contents unspecified).</summary>
    Tensor Allocate(DType dtype, params int[] shape);

    /// <summary>Called once per weight at bind time: the CPU may use it in place, a GPU uploads it.</summary>
    Tensor PrepareWeight(Tensor weight);

    /// <summary>
    /// Called once per Linear weight [out, in] at bind time: like <see cref="PrepareWeight"/>, and a backend may also
    /// keep a form its matrix products read faster (the CPU packs bf16 weights losslessly into 12 bits per value).
    /// The returned tensor reads as the same values.
    /// </summary>
    Tensor PrepareLinearWeight(Tensor weight) => PrepareWeight(weight);

    void Upload(ReadOnlySpan<float> source, Tensor destination);
    void Download(Tensor source, Span<float> destination);
    void Copy(Tensor source, Tensor destination);
    /// <summary>destination rows [dstRow, dstRow+count) = source rows [srcRow, srcRow+count) (last dims equal).</summary>
    void CopyRows(Tensor source, int sourceRow, Tensor destination, int destinationRow, int count);

    /// <summary>y[M,N] = x[M,K] · weight[N,K]ᵀ (+ bias[N]). Weight dtype F32, BF16, F16 or I8.</summary>
    void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y);

    /// <summary>
    /// <see cref="Linear"/> where each row of y is bit-identical to what <see cref="Linear"/> gives for that row alone
    /// (batched decode: a sequence's tokens must not depend on which others share its step). The default runs the rows
    /// one at a time; a backend that can stream each weight once for all rows with the single-row arithmetic overrides it.
    /// </summary>
    void LinearRows(Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        for (int i = 0; i < x.Rows; i++) Linear(x.SliceRows(i, 1), weight, bias, y.SliceRows(i, 1));
    }

    /// <summary>y = a + b, elementwise, same shapes (y may alias a or b).</summary>
    void Add(Tensor a, Tensor b, Tensor y);
    /// <summary>y = a ⊙ b.</summary>
    void Multiply(Tensor a, Tensor b, Tensor y);
    /// <summary>y = x · scale.</summary>
    void Scale(Tensor x, float scale, Tensor y);

    /// <summary>Per row of the last dimension; bias optional. y may alias x.</summary>
    void LayerNorm(Tensor x, Tensor weight, Tensor? bias, float epsilon, Tensor y);
    void RmsNorm(Tensor x, Tensor weight, float epsilon, Tensor y);

    /// <summary>
    /// In place, rotate-half RoPE on the first <paramref name="rotaryDims"/> of each head of x[T, heads·headDim];
    /// row t has position <paramref name="startPosition"/> + t.
    /// </summary>
    void Rotary(Tensor x, int heads, int headDim, int rotaryDims, float theta, int startPosition);

    void Activate(Tensor x, Activation activation, Tensor y);
    /// <summary>y = silu(gate) ⊙ up.</summary>
    void SwiGlu(Tensor gate, Tensor up, Tensor y);
    /// <summary>Softmax over the last dimension, in f32.</summary>
    void Softmax(Tensor x, Tensor y);

    /// <summary>y[i] = table[ids[i]] (any table dtype, f32 output).</summary>
    void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor y);

    /// <summary>
    /// Scaled dot-product attention. q[Tq, heads·headDim], k and v [Tk, kvHeads·headDim] (grouped-query when
    /// kvHeads &lt; heads), y[Tq, heads·headDim]. When causal, query row i sits at absolute position
    /// <paramref name="queryStart"/> + i and sees keys 0..queryStart+i; otherwise it sees all Tk keys.
    /// </summary>
    void Attention(Tensor q, Tensor k, Tensor v, Tensor y, int heads, int kvHeads, int headDim, bool causal, int queryStart);

    /// <summary>destination[i] = source[rows[i]].</summary>
    void GatherRows(Tensor source, ReadOnlySpan<int> rows, Tensor destination);
    /// <summary>destination[rows[i]] += weights[i] · source[i].</summary>
    void ScatterAddRows(Tensor source, ReadOnlySpan<int> rows, ReadOnlySpan<float> weights, Tensor destination);

    /// <summary>
    /// Convolution with stride = kernel = patch: image[3, H, W] and weight[C, 3, patch, patch] (+ bias[C])
    /// to y[(H/patch)·(W/patch), C], patches in row-major order.
    /// </summary>
    void PatchEmbed(Tensor image, Tensor weight, Tensor? bias, int patch, Tensor y);

    /// <summary>x[H·W, C] channels-last grid, k×k average pooling with stride k, to y[(H/k)·(W/k), C].</summary>
    void AvgPool2d(Tensor x, int height, int width, int kernel, Tensor y);

    /// <summary>x[C, H, W] to y[C, outH, outW]: PyTorch bicubic, align_corners=false, A = −0.75, no antialias.</summary>
    void UpsampleBicubic(Tensor x, int outHeight, int outWidth, Tensor y);
}
