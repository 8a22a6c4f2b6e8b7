using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

/// <summary>
/// y = x·Wᵀ + b with W [out, in] in any weight dtype. The constructor prepares the weight for the backend
/// (a no-op for an already prepared tensor); the bias is kept in f32.
/// </summary>
public sealed class Linear
{
    public Linear(IBackend backend, Tensor weight, Tensor? bias)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(weight);
        ModuleTensors.RequireRank(weight, 2, "Linear weight");
        if (bias is not null && (bias.Rank != 1 || bias.Dim(0) != weight.Dim(0)))
            throw new ArgumentException($"Linear bias {bias} does not match weight {weight}: expected [{weight.Dim(0)}]");
        OutFeatures = weight.Dim(0);
        InFeatures = weight.Dim(1);
        Weight = backend.PrepareLinearWeight(weight);
        Bias = bias is null ? null : ModuleTensors.PrepareF32(backend, bias);
    }

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public Tensor Weight { get; }
    public Tensor? Bias { get; }

    /// <summary>x [rows, in] → new y [rows, out].</summary>
    public Tensor Forward(ForwardContext ctx, Tensor x)
    {
        ModuleTensors.RequireColumns(x, InFeatures, $"Linear {Weight.Name ?? ""}");
        var y = ctx.Backend.Allocate(DType.F32, x.Rows, OutFeatures);
        Run(ctx, x, y);
        return y;
    }

    /// <summary>Writes into a caller-owned y [rows, out] (for buffer reuse).</summary>
    public void Forward(ForwardContext ctx, Tensor x, Tensor y)
    {
        ModuleTensors.RequireColumns(x, InFeatures, $"Linear {Weight.Name ?? ""}");
        if (y.Rank != 2 || y.Rows != x.Rows || y.Columns != OutFeatures)
            throw new ArgumentException($"Linear output {y} should be [{x.Rows}, {OutFeatures}]");
        Run(ctx, x, y);
    }

    private void Run(ForwardContext ctx, Tensor x, Tensor y)
    {
        if (ctx.RowIndependentLinear && x.Rows > 1) ctx.Backend.LinearRows(x, Weight, Bias, y);
        else ctx.Backend.Linear(x, Weight, Bias, y);
    }
}
