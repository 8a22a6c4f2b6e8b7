using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

/// <summary>A token-wise MLP: x [rows, in] → new tensor [rows, out]. Rows are independent.</summary>
public interface IFeedForward
{
    Tensor Forward(ForwardContext ctx, Tensor x);

    /// <summary>Width of the output rows when known up front (null: same as the input).</summary>
    int? OutFeatures => null;
}

/// <summary>down(silu(gate x) ⊙ up x): StableLM, Mistral; a Mixtral expert is gate = w1, up = w3, down = w2.</summary>
public sealed class SwiGluFeedForward : IFeedForward
{
    public SwiGluFeedForward(Linear gate, Linear up, Linear down)
    {
        ArgumentNullException.ThrowIfNull(gate);
        ArgumentNullException.ThrowIfNull(up);
        ArgumentNullException.ThrowIfNull(down);
        if (gate.OutFeatures != up.OutFeatures || gate.InFeatures != up.InFeatures || down.InFeatures != up.OutFeatures)
            throw new ArgumentException(
                $"SwiGLU shapes disagree: gate [{gate.OutFeatures}, {gate.InFeatures}], up [{up.OutFeatures}, {up.InFeatures}], down [{down.OutFeatures}, {down.InFeatures}]");
        Gate = gate;
        Up = up;
        Down = down;
    }

    public Linear Gate { get; }
    public Linear Up { get; }
    public Linear Down { get; }
    public int? OutFeatures => Down.OutFeatures;

    public Tensor Forward(ForwardContext ctx, Tensor x)
    {
        var gate = Gate.Forward(ctx, x);
        var up = Up.Forward(ctx, x);
        ctx.Backend.SwiGlu(gate, up, gate);
        ModuleTensors.Release(up);
        var y = Down.Forward(ctx, gate);
        ModuleTensors.Release(gate);
        return y;
    }
}

/// <summary>Qwen-1: c_proj(w1 x ⊙ silu(w2 x)) — the SiLU is on w2, not w1.</summary>
public sealed class QwenFeedForward : IFeedForward
{
    public QwenFeedForward(Linear w1, Linear w2, Linear cProj)
    {
        ArgumentNullException.ThrowIfNull(w1);
        ArgumentNullException.ThrowIfNull(w2);
        ArgumentNullException.ThrowIfNull(cProj);
        if (w1.OutFeatures != w2.OutFeatures || w1.InFeatures != w2.InFeatures || cProj.InFeatures != w1.OutFeatures)
            throw new ArgumentException(
                $"Qwen MLP shapes disagree: w1 [{w1.OutFeatures}, {w1.InFeatures}], w2 [{w2.OutFeatures}, {w2.InFeatures}], c_proj [{cProj.OutFeatures}, {cProj.InFeatures}]");
        W1 = w1;
        W2 = w2;
        CProj = cProj;
    }

    public Linear W1 { get; }
    public Linear W2 { get; }
    public Linear CProj { get; }
    public int? OutFeatures => CProj.OutFeatures;

    public Tensor Forward(ForwardContext ctx, Tensor x)
    {
        var a1 = W1.Forward(ctx, x);
        var a2 = W2.Forward(ctx, x);
        ctx.Backend.SwiGlu(a2, a1, a2);   // silu(w2 x) ⊙ w1 x
        ModuleTensors.Release(a1);
        var y = CProj.Forward(ctx, a2);
        ModuleTensors.Release(a2);
        return y;
    }
}

/// <summary>fc2(act(fc1 x)): Phi-2 (GeluTanh), CLIP (QuickGelu), SigLIP (GeluTanh), projector mlp2x_gelu (GeluErf).</summary>
public sealed class GeluFeedForward : IFeedForward
{
    public GeluFeedForward(Linear fc1, Linear fc2, Activation activation)
    {
        ArgumentNullException.ThrowIfNull(fc1);
        ArgumentNullException.ThrowIfNull(fc2);
        if (fc2.InFeatures != fc1.OutFeatures)
            throw new ArgumentException($"MLP shapes disagree: fc1 gives {fc1.OutFeatures} features, fc2 takes {fc2.InFeatures}");
        Fc1 = fc1;
        Fc2 = fc2;
        Activation = activation;
    }

    public Linear Fc1 { get; }
    public Linear Fc2 { get; }
    public Activation Activation { get; }
    public int? OutFeatures => Fc2.OutFeatures;

    public Tensor Forward(ForwardContext ctx, Tensor x)
    {
        var h = Fc1.Forward(ctx, x);
        ctx.Backend.Activate(h, Activation, h);
        var y = Fc2.Forward(ctx, h);
        ModuleTensors.Release(h);
        return y;
    }
}
