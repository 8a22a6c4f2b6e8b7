using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

/// <summary>
/// A sparse mixture of <typeparamref name="TExpert"/> MLPs. The router runs in f32 on every row of the call, the
/// routing follows <see cref="MoeRouter"/>, and then each expert that received tokens runs once on exactly those
/// rows (gathered into one batch) and its output is scatter-added back with the routing weights: the work follows
/// the activated parameters, not the number of experts. Returns y = Σ w·Expert(x) (plus the PR-MoE residual when
/// configured); the block's residual add is the caller's. Experts may change the width (CuMo's MLP-MoE projector
/// maps 2048 → 4096): the output has <see cref="OutFeatures"/> columns.
/// </summary>
public sealed class MoeFeedForward<TExpert> : IFeedForward where TExpert : IFeedForward
{
    // No mutable fields: one layer object serves every sequence and thread at once (weights are shared, routing
    // scratch is per call), see docs/architecture.md "Threads".
    private readonly TExpert[] _experts;
    private readonly int? _outFeatures;
    private readonly MoeExpertWeights? _deviceExperts;

    public MoeFeedForward(Linear router, TExpert[] experts, MoeOptions options, string site, int layerIndex,
        IFeedForward? residualMlp = null, Linear? residualCoefficient = null)
    {
        ArgumentNullException.ThrowIfNull(router);
        ArgumentNullException.ThrowIfNull(experts);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrEmpty(site);
        options.Validate();
        if (experts.Length != options.Experts)
            throw new ArgumentException($"{site} layer {layerIndex}: {experts.Length} experts given, options say {options.Experts}");
        if (router.OutFeatures != options.Experts)
            throw new ArgumentException($"{site} layer {layerIndex}: the router gives {router.OutFeatures} logits for {options.Experts} experts");
        if ((residualMlp is null) != (residualCoefficient is null))
            throw new ArgumentException($"{site} layer {layerIndex}: the PR-MoE residual needs both the dense MLP and the coefficient");
        if (residualCoefficient is not null && residualCoefficient.OutFeatures != 2)
            throw new ArgumentException($"{site} layer {layerIndex}: the PR-MoE coefficient must give 2 values per token, not {residualCoefficient.OutFeatures}");
        for (int e = 0; e < experts.Length; e++)
            if (experts[e] is null) throw new ArgumentException($"{site} layer {layerIndex}: expert {e} is missing");
        int? outFeatures = experts[0].OutFeatures;
        for (int e = 1; e < experts.Length; e++)
            if (experts[e].OutFeatures != outFeatures)
                throw new ArgumentException($"{site} layer {layerIndex}: experts 0 and {e} give different output widths");
        if (residualMlp?.OutFeatures is int denseWidth && outFeatures is int expertWidth && denseWidth != expertWidth)
            throw new ArgumentException($"{site} layer {layerIndex}: the PR-MoE dense MLP gives a different output width than the experts");
        _outFeatures = outFeatures;
        Router = router;
        _experts = experts;
        Options = options;
        Site = site;
        LayerIndex = layerIndex;
        ResidualMlp = residualMlp;
        ResidualCoefficient = residualCoefficient;
        _deviceExperts = MoeExpertWeights.Describe(experts);
    }

    public Linear Router { get; }
    public IReadOnlyList<TExpert> Experts => _experts;
    public MoeOptions Options { get; }
    /// <summary>"llm", "vision" or "projector": the routing statistics key together with the layer index.</summary>
    public string Site { get; }
    public int LayerIndex { get; }
    public IFeedForward? ResidualMlp { get; }
    public Linear? ResidualCoefficient { get; }
    /// <summary>Output width: the experts' when they declare it, otherwise the router's input width.</summary>
    public int OutFeatures => _outFeatures ?? Router.InFeatures;

    public Tensor Forward(ForwardContext ctx, Tensor x)
    {
        var backend = ctx.Backend;
        ModuleTensors.RequireColumns(x, Router.InFeatures, $"{Site} MoE layer {LayerIndex}");
        int tokens = x.Rows, width = x.Columns, outWidth = OutFeatures, experts = Options.Experts, k = Options.TopK;
        // A device that runs the whole MoE layer (routing included) keeps the step inside a CUDA graph; batched
        // decode (segments) routes per sequence on the host instead.
        if (ResidualMlp is null && ctx.Segments is null && _deviceExperts is not null && backend is IDeviceMoeBackend device
            && device.CanRunMoe(tokens, Options, _deviceExperts))
            return ForwardOnDevice(ctx, device, x);
        // Per-call scratch: the layer is shared by every thread and sequence using the model.
        var hostLogits = new float[tokens * experts];
        var probabilities = new float[tokens * experts];
        var chosenBuffer = new int[tokens * k];
        var weightsBuffer = new float[tokens * k];
        var groupRows = new int[tokens * k];
        var groupWeights = new float[tokens * k];
        var groupCounts = new int[experts];
        var groupStarts = new int[experts];

        // Router in f32 on the f32 activations; routing on the host.
        var logits = Router.Forward(ctx, x);
        backend.Download(logits, hostLogits);
        ModuleTensors.Release(logits);
        var chosen = chosenBuffer.AsSpan();
        var weights = weightsBuffer.AsSpan();
        if (Site == RoutingSites.Llm && ctx.Segments is { } segments)
        {
            // Batched decode: each sequence is routed as if it ran alone (DeepSpeed's capacity counts the tokens of
            // one call, so routing the stacked rows together would let sequences drop each other's assignments).
            int offset = 0;
            foreach (var segment in segments)
            {
                int rows = segment.Rows;
                if (offset + rows > tokens)
                    throw new InvalidOperationException($"{Site} MoE layer {LayerIndex}: the segments hold more rows than the call's {tokens}");
                MoeRouter.Route(hostLogits.AsSpan(offset * experts, rows * experts), rows, Options, segment.Random,
                    chosen.Slice(offset * k, rows * k), weights.Slice(offset * k, rows * k), probabilities.AsSpan(offset * experts, rows * experts));
                RecordRouting(segment.Routing, segment.StartPosition, segment.IsImageToken, rows,
                    chosen.Slice(offset * k, rows * k), weights.Slice(offset * k, rows * k));
                offset += rows;
            }
            if (offset != tokens)
                throw new InvalidOperationException($"{Site} MoE layer {LayerIndex}: the segments hold {offset} rows; the call has {tokens}");
        }
        else
        {
            MoeRouter.Route(hostLogits, tokens, Options, ctx.Random, chosen, weights, probabilities);
            RecordRouting(ctx.Routing, ctx.StartPosition, ctx.IsImageToken, tokens, chosen, weights);
        }

        // Group the kept assignments of all rows by expert (counting sort, token order within each expert).
        foreach (int e in chosen) if (e >= 0) groupCounts[e]++;
        int largestGroup = 0, groupOffset = 0;
        for (int e = 0; e < experts; e++)
        {
            groupStarts[e] = groupOffset;
            groupOffset += groupCounts[e];
            largestGroup = Math.Max(largestGroup, groupCounts[e]);
        }
        Span<int> fill = experts <= 256 ? stackalloc int[experts] : new int[experts];
        groupStarts.AsSpan().CopyTo(fill);
        for (int t = 0; t < tokens; t++)
        {
            for (int j = 0; j < k; j++)
            {
                int e = chosen[t * k + j];
                if (e < 0) continue;
                int slot = fill[e]++;
                groupRows[slot] = t;
                groupWeights[slot] = weights[t * k + j];
            }
        }

        var y = backend.Allocate(DType.F32, tokens, outWidth);
        ModuleTensors.Zero(backend, y);
        Tensor? batch = null;
        for (int e = 0; e < experts; e++)
        {
            int count = groupCounts[e];
            if (count == 0) continue;
            var rows = groupRows.AsSpan(groupStarts[e], count);
            var rowWeights = groupWeights.AsSpan(groupStarts[e], count);
            Tensor input;
            if (count == tokens)
            {
                input = x; // every row, in order: no gather needed (always the case when decoding one token)
            }
            else
            {
                batch ??= backend.Allocate(DType.F32, largestGroup, width);
                input = batch.SliceRows(0, count);
                backend.GatherRows(x, rows, input);
            }
            var expertOutput = _experts[e].Forward(ctx, input);
            if (expertOutput.Rows != count || expertOutput.Columns != outWidth)
                throw new InvalidOperationException(
                    $"{Site} MoE layer {LayerIndex}: expert {e} returned {expertOutput}, expected [{count}, {outWidth}]");
            backend.ScatterAddRows(expertOutput, rows, rowWeights, y);
            if (!ReferenceEquals(expertOutput.Storage, input.Storage)) ModuleTensors.Release(expertOutput);
        }
        ModuleTensors.Release(batch);

        if (ResidualMlp is null || ResidualCoefficient is null) return y;
        return MixResidual(ctx, x, y);
    }

    /// <summary>
    /// The whole layer on a backend that routes on the device (<see cref="IDeviceMoeBackend"/>): nothing here waits
    /// for the GPU, so a decode step can be one CUDA graph. The routing record, when asked for, arrives at the next
    /// synchronisation (the logits download), with the position and image mask of this call.
    /// </summary>
    private Tensor ForwardOnDevice(ForwardContext ctx, IDeviceMoeBackend device, Tensor x)
    {
        var backend = ctx.Backend;
        int tokens = x.Rows, experts = Options.Experts;
        var logits = Router.Forward(ctx, x);
        float[] noise = [];
        if (Options.Routing == MoeRoutingKind.DeepSpeed && Options.TopK == 2 && Options.SecondExpert == SecondExpertPolicy.Sampled)
        {
            var random = ctx.Random ?? throw new InvalidOperationException("the sampled second-expert policy needs ForwardContext.Random (seed it for reproducible runs)");
            // The host router draws one Gumbel sample per token and expert, in this order.
            noise = new float[tokens * experts];
            for (int i = 0; i < noise.Length; i++) noise[i] = MoeRouter.GumbelNoise(random);
        }
        Action<int[], float[]>? onRouting = null;
        if (ctx.Routing is { } recorder)
        {
            int start = ctx.StartPosition;
            bool[]? mask = ctx.IsImageToken;
            if (Site == RoutingSites.Llm && mask is not null && mask.Length != tokens)
                throw new InvalidOperationException(
                    $"ForwardContext.IsImageToken has {mask.Length} entries for a call of {tokens} rows: set it for every call (null for text-only calls)");
            onRouting = (chosen, weights) => RecordRouting(recorder, start, mask, tokens, chosen, weights);
        }
        var y = backend.Allocate(DType.F32, tokens, OutFeatures);
        device.RunMoe(x, logits, Options, _deviceExperts!, noise, y, onRouting);
        ModuleTensors.Release(logits);
        return y;
    }

    /// <summary>PR-MoE: out = moe·softmax(coef x)[0] + mlp(x)·softmax(coef x)[1].</summary>
    private Tensor MixResidual(ForwardContext ctx, Tensor x, Tensor moe)
    {
        var backend = ctx.Backend;
        int tokens = x.Rows;
        var coefficientLogits = ResidualCoefficient!.Forward(ctx, x);
        var coefficients = new float[tokens * 2];
        backend.Download(coefficientLogits, coefficients);
        ModuleTensors.Release(coefficientLogits);
        var moeShare = new float[tokens];
        var mlpShare = new float[tokens];
        var identity = new int[tokens];
        for (int t = 0; t < tokens; t++)
        {
            float a = coefficients[2 * t], b = coefficients[2 * t + 1];
            float max = MathF.Max(a, b);
            float ea = MathF.Exp(a - max), eb = MathF.Exp(b - max);
            float sum = ea + eb;
            moeShare[t] = ea / sum;
            mlpShare[t] = eb / sum;
            identity[t] = t;
        }
        var dense = ResidualMlp!.Forward(ctx, x);
        var output = backend.Allocate(DType.F32, tokens, moe.Columns);
        ModuleTensors.Zero(backend, output);
        backend.ScatterAddRows(moe, identity, moeShare, output);
        backend.ScatterAddRows(dense, identity, mlpShare, output);
        ModuleTensors.Release(dense);
        ModuleTensors.Release(moe);
        return output;
    }

    private void RecordRouting(RoutingRecorder? recorder, int startPosition, bool[]? isImageToken, int tokens,
        ReadOnlySpan<int> chosen, ReadOnlySpan<float> weights)
    {
        if (recorder is null) return;
        bool[]? image = null;
        if (Site == RoutingSites.Llm && isImageToken is { } mask)
        {
            if (mask.Length != tokens)
                throw new InvalidOperationException(
                    $"the image mask (ForwardContext.IsImageToken or a segment's) has {mask.Length} entries for {tokens} rows: set it for every call (null for text-only calls)");
            image = mask;
        }
        recorder.Record(Site, LayerIndex, startPosition, tokens, Options.TopK, Options.Experts, chosen, weights,
            image, allImage: Site != RoutingSites.Llm);
    }
}
