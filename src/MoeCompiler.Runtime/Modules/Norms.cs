using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

public interface INorm
{
    /// <summary>Normalises each row of x [rows, width] into a new tensor.</summary>
    Tensor Forward(ForwardContext ctx, Tensor x);
}

/// <summary>LayerNorm over the last dimension with weight and optional bias (StableLM, Phi-2, CLIP, SigLIP).</summary>
public sealed class LayerNorm : INorm
{
    public LayerNorm(IBackend backend, Tensor weight, Tensor? bias, float epsilon)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ModuleTensors.RequireRank(weight, 1, "LayerNorm weight");
        if (bias is not null && (bias.Rank != 1 || bias.Dim(0) != weight.Dim(0)))
            throw new ArgumentException($"LayerNorm bias {bias} does not match weight {weight}");
        if (!(epsilon > 0)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "LayerNorm epsilon must be positive");
        Width = weight.Dim(0);
        Weight = ModuleTensors.PrepareF32(backend, weight);
        Bias = bias is null ? null : ModuleTensors.PrepareF32(backend, bias);
        Epsilon = epsilon;
    }

    public int Width { get; }
    public Tensor Weight { get; }
    public Tensor? Bias { get; }
    public float Epsilon { get; }

    public Tensor Forward(ForwardContext ctx, Tensor x)
    {
        ModuleTensors.RequireColumns(x, Width, "LayerNorm");
        var y = ctx.Backend.Allocate(DType.F32, x.Rows, Width);
        ctx.Backend.LayerNorm(x, Weight, Bias, Epsilon, y);
        return y;
    }
}

/// <summary>x / sqrt(mean(x²) + eps) · weight, in f32 (Qwen, Mistral, Mixtral).</summary>
public sealed class RmsNorm : INorm
{
    public RmsNorm(IBackend backend, Tensor weight, float epsilon)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ModuleTensors.RequireRank(weight, 1, "RmsNorm weight");
        if (!(epsilon > 0)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "RmsNorm epsilon must be positive");
        Width = weight.Dim(0);
        Weight = ModuleTensors.PrepareF32(backend, weight);
        Epsilon = epsilon;
    }

    public int Width { get; }
    public Tensor Weight { get; }
    public float Epsilon { get; }

    public Tensor Forward(ForwardContext ctx, Tensor x)
    {
        ModuleTensors.RequireColumns(x, Width, "RmsNorm");
        var y = ctx.Backend.Allocate(DType.F32, x.Rows, Width);
        ctx.Backend.RmsNorm(x, Weight, Epsilon, y);
        return y;
    }
}
