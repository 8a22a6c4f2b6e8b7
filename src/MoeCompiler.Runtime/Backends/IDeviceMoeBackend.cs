using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Backends;

/// <summary>The two expert shapes a backend can run without the module objects.</summary>
public enum MoeExpertKind
{
    /// <summary>Down(silu(First x) ⊙ Second x): SwiGLU (First = gate, Second = up) and Qwen-1 (First = w2, Second = w1).</summary>
    GatedSilu,
    /// <summary>Down(act(First x + b1)) + b2: Phi-2, CLIP and the projector MLPs.</summary>
    Mlp,
}

/// <summary>
/// The weights of one MoE layer's experts, expert by expert, as prepared by the backend (the Linear weights of the
/// expert modules): what <see cref="IDeviceMoeBackend"/> needs to run the experts by itself.
/// </summary>
public sealed class MoeExpertWeights
{
    public required MoeExpertKind Kind { get; init; }
    /// <summary>[experts] of [F, H]: the gate (silu side) of a gated expert, fc1 of an MLP.</summary>
    public required Tensor[] First { get; init; }
    /// <summary>[experts] of [F, H]: the multiplied side of a gated expert; null for an MLP.</summary>
    public Tensor[]? Second { get; init; }
    /// <summary>[experts] of [O, F].</summary>
    public required Tensor[] Down { get; init; }
    /// <summary>MLP biases per expert, or null when the experts have none.</summary>
    public Tensor[]? FirstBias { get; init; }
    public Tensor[]? DownBias { get; init; }
    /// <summary>The MLP's activation (unused for gated experts).</summary>
    public Activation Activation { get; init; }

    public int Experts => First.Length;
    public int InFeatures => First[0].Columns;
    public int Hidden => First[0].Rows;
    public int OutFeatures => Down[0].Rows;

    /// <summary>The weights of <paramref name="experts"/> when they are all of one known shape, else null.</summary>
    public static MoeExpertWeights? Describe<TExpert>(IReadOnlyList<TExpert> experts) where TExpert : IFeedForward
    {
        int n = experts.Count;
        if (n == 0) return null;
        if (experts.All(e => e is SwiGluFeedForward))
        {
            var s = experts.Cast<SwiGluFeedForward>().ToArray();
            if (s.Any(e => e.Gate.Bias is not null || e.Up.Bias is not null || e.Down.Bias is not null)) return null;
            return new MoeExpertWeights
            {
                Kind = MoeExpertKind.GatedSilu, First = s.Select(e => e.Gate.Weight).ToArray(),
                Second = s.Select(e => e.Up.Weight).ToArray(), Down = s.Select(e => e.Down.Weight).ToArray(),
            };
        }
        if (experts.All(e => e is QwenFeedForward))
        {
            var q = experts.Cast<QwenFeedForward>().ToArray();
            if (q.Any(e => e.W1.Bias is not null || e.W2.Bias is not null || e.CProj.Bias is not null)) return null;
            return new MoeExpertWeights
            {
                Kind = MoeExpertKind.GatedSilu, First = q.Select(e => e.W2.Weight).ToArray(),
                Second = q.Select(e => e.W1.Weight).ToArray(), Down = q.Select(e => e.CProj.Weight).ToArray(),
            };
        }
        if (experts.All(e => e is GeluFeedForward))
        {
            var g = experts.Cast<GeluFeedForward>().ToArray();
            if (g.Any(e => e.Activation != g[0].Activation)) return null;
            bool firstBias = g[0].Fc1.Bias is not null, downBias = g[0].Fc2.Bias is not null;
            if (g.Any(e => (e.Fc1.Bias is not null) != firstBias || (e.Fc2.Bias is not null) != downBias)) return null;
            return new MoeExpertWeights
            {
                Kind = MoeExpertKind.Mlp, Activation = g[0].Activation, First = g.Select(e => e.Fc1.Weight).ToArray(),
                Down = g.Select(e => e.Fc2.Weight).ToArray(),
                FirstBias = firstBias ? g.Select(e => e.Fc1.Bias!).ToArray() : null,
                DownBias = downBias ? g.Select(e => e.Fc2.Bias!).ToArray() : null,
            };
        }
        return null;
    }
}

/// <summary>
/// A backend that runs a whole sparse MoE layer by itself (routing, capacity, grouping by expert, gather, expert
/// products, weighted combine) without the host waiting for the router's output, so that a decode step is pure
/// device work (the CUDA backend: one CUDA graph per decode step). <see cref="MoeFeedForward{TExpert}"/> uses it
/// when <see cref="CanRunMoe"/> says yes and routes on the host otherwise.
/// </summary>
public interface IDeviceMoeBackend
{
    /// <summary>Whether <see cref="RunMoe"/> handles a call of <paramref name="tokens"/> rows with these settings and experts.</summary>
    bool CanRunMoe(int tokens, MoeOptions options, MoeExpertWeights experts);

    /// <summary>
    /// y[T, O] = Σ over each row's kept choices of weight · expert(x row), routed from <paramref name="routerLogits"/>
    /// [T, experts] exactly as <see cref="MoeRouter.Route"/> does. <paramref name="secondChoiceNoise"/> is [T, experts]
    /// Gumbel noise for DeepSpeed's sampled top-2 second choice (drawn by the caller in the host router's order), else
    /// empty. <paramref name="onRouting"/>, when given, receives the chosen experts and weights [T, k] once they have
    /// reached the host (at the backend's next synchronisation, e.g. the next download), without making the host wait.
    /// </summary>
    void RunMoe(Tensor x, Tensor routerLogits, MoeOptions options, MoeExpertWeights experts, ReadOnlySpan<float> secondChoiceNoise,
        Tensor y, Action<int[], float[]>? onRouting);
}
