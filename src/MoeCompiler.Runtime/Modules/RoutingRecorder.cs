using System.Text.Json;

namespace MoeCompiler.Runtime.Modules;

/// <summary>The MoE sites a variant can have.</summary>
public static class RoutingSites
{
    public const string Llm = "llm";
    public const string Vision = "vision";
    public const string Projector = "projector";
}

/// <summary>
/// One MoE layer's decisions in one forward call. <see cref="ChosenExperts"/> and <see cref="Weights"/> are
/// [Tokens, TopK] row-major, after capacity (−1 / 0 for a dropped assignment), first choice first.
/// <see cref="IsImageToken"/> has one entry per token.
/// </summary>
public sealed record RoutingRecord(int Call, string Site, int Layer, int StartPosition, int Tokens, int TopK, int Experts,
    int[] ChosenExperts, float[] Weights, bool[] IsImageToken)
{
    public int Expert(int token, int choice) => ChosenExperts[token * TopK + choice];
    public float Weight(int token, int choice) => Weights[token * TopK + choice];
}

/// <summary>
/// Collects <see cref="RoutingRecord"/>s from every MoE layer that runs with this recorder set on
/// <see cref="ForwardContext.Routing"/>. A "call" is one pass through the model's layers: it advances when
/// <see cref="BeginCall"/> is called or automatically when a (site, layer) records a second time.
/// Thread-safe.
/// </summary>
public sealed class RoutingRecorder
{
    private readonly object _gate = new();
    private readonly List<RoutingRecord> _records = [];
    private readonly HashSet<(string Site, int Layer)> _seenThisCall = [];
    private int _call;

    public int CurrentCall
    {
        get { lock (_gate) return _call; }
    }

    public IReadOnlyList<RoutingRecord> Records
    {
        get { lock (_gate) return _records.ToArray(); }
    }

    /// <summary>Starts a new forward call (no-op when nothing was recorded since the last one).</summary>
    public void BeginCall()
    {
        lock (_gate)
        {
            if (_seenThisCall.Count == 0) return;
            _call++;
            _seenThisCall.Clear();
        }
    }

    public void Clear()
    {
        lock (_gate)
        {
            _records.Clear();
            _seenThisCall.Clear();
            _call = 0;
        }
    }

    /// <param name="isImageToken">Per token, or null: then every token counts as <paramref name="allImage"/> says.</param>
    public void Record(string site, int layer, int startPosition, int tokens, int topK, int experts,
        ReadOnlySpan<int> chosenExperts, ReadOnlySpan<float> weights, ReadOnlySpan<bool> isImageToken, bool allImage = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(site);
        if (chosenExperts.Length != tokens * topK || weights.Length != tokens * topK)
            throw new ArgumentException($"routing of {tokens} tokens × top-{topK} needs {tokens * topK} choices and weights");
        if (!isImageToken.IsEmpty && isImageToken.Length != tokens)
            throw new ArgumentException($"image mask has {isImageToken.Length} entries for {tokens} tokens");
        var image = new bool[tokens];
        if (isImageToken.IsEmpty) image.AsSpan().Fill(allImage);
        else isImageToken.CopyTo(image);
        lock (_gate)
        {
            if (!_seenThisCall.Add((site, layer)))
            {
                _call++;
                _seenThisCall.Clear();
                _seenThisCall.Add((site, layer));
            }
            _records.Add(new RoutingRecord(_call, site, layer, startPosition, tokens, topK, experts,
                chosenExperts.ToArray(), weights.ToArray(), image));
        }
    }

    /// <summary>Per (site, layer) over everything recorded so far: how the tokens spread over the experts.</summary>
    public RoutingStatistics Statistics()
    {
        RoutingRecord[] records;
        lock (_gate) records = _records.ToArray();
        var layers = new SortedDictionary<(string, int), Accumulator>(Comparer<(string, int)>.Create((a, b) =>
        {
            int c = string.CompareOrdinal(a.Item1, b.Item1);
            return c != 0 ? c : a.Item2.CompareTo(b.Item2);
        }));
        foreach (var r in records)
        {
            if (!layers.TryGetValue((r.Site, r.Layer), out var acc))
                layers[(r.Site, r.Layer)] = acc = new Accumulator(r.Experts);
            if (acc.Experts != r.Experts)
                throw new InvalidOperationException($"{r.Site} layer {r.Layer} recorded with {acc.Experts} and {r.Experts} experts");
            acc.Add(r);
        }
        var result = new List<ExpertLoad>();
        foreach (var ((site, layer), acc) in layers) result.Add(acc.ToLoad(site, layer));
        return new RoutingStatistics(result);
    }

    private sealed class Accumulator(int experts)
    {
        public int Experts { get; } = experts;
        public long TextTokens, ImageTokens, DroppedText, DroppedImage;
        public readonly long[] Text = new long[experts], Image = new long[experts];
        public readonly long[] TextFirst = new long[experts], ImageFirst = new long[experts];

        public void Add(RoutingRecord r)
        {
            for (int t = 0; t < r.Tokens; t++)
            {
                bool image = r.IsImageToken[t];
                if (image) ImageTokens++; else TextTokens++;
                for (int j = 0; j < r.TopK; j++)
                {
                    int e = r.ChosenExperts[t * r.TopK + j];
                    if (e < 0)
                    {
                        if (image) DroppedImage++; else DroppedText++;
                        continue;
                    }
                    if (image) Image[e]++; else Text[e]++;
                    if (j == 0) { if (image) ImageFirst[e]++; else TextFirst[e]++; }
                }
            }
        }

        public ExpertLoad ToLoad(string site, int layer) => new(site, layer, Experts, TextTokens, ImageTokens,
            Text, Image, TextFirst, ImageFirst, DroppedText, DroppedImage);
    }
}

/// <summary>
/// One MoE layer's load. Assignment counts include every kept top-k choice (a token routed to two experts counts
/// once for each); first-choice counts only the top-1. Shares are fractions of the kept assignments and sum to 1
/// over the experts (all zeros when there were none): the per-layer expert loading of MoE-LLaVA's Figure 4, split
/// by modality, and, read per expert, the text/image composition of Figure 5.
/// </summary>
public sealed record ExpertLoad(string Site, int Layer, int Experts, long TextTokens, long ImageTokens,
    long[] TextAssignments, long[] ImageAssignments, long[] TextFirstChoices, long[] ImageFirstChoices,
    long DroppedTextAssignments, long DroppedImageAssignments)
{
    public double[] TextShare => Shares(TextAssignments);
    public double[] ImageShare => Shares(ImageAssignments);
    public double[] AllShare
    {
        get
        {
            var all = new long[Experts];
            for (int e = 0; e < Experts; e++) all[e] = TextAssignments[e] + ImageAssignments[e];
            return Shares(all);
        }
    }

    /// <summary>Per expert: the fraction of its assignments that were image tokens (Figure 5); 0 when idle.</summary>
    public double[] ImageFractionPerExpert
    {
        get
        {
            var result = new double[Experts];
            for (int e = 0; e < Experts; e++)
            {
                long total = TextAssignments[e] + ImageAssignments[e];
                result[e] = total == 0 ? 0 : (double)ImageAssignments[e] / total;
            }
            return result;
        }
    }

    private static double[] Shares(long[] counts)
    {
        long total = 0;
        foreach (long c in counts) total += c;
        var shares = new double[counts.Length];
        if (total == 0) return shares;
        for (int e = 0; e < counts.Length; e++) shares[e] = (double)counts[e] / total;
        return shares;
    }
}

/// <summary>Expert loads of every MoE layer that ran, ordered by site then layer. Serialisable as JSON.</summary>
public sealed record RoutingStatistics(IReadOnlyList<ExpertLoad> Layers)
{
    public ExpertLoad? Find(string site, int layer)
    {
        foreach (var load in Layers) if (load.Site == site && load.Layer == layer) return load;
        return null;
    }

    private static readonly JsonSerializerOptions s_json = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    /// <summary>Counts and shares per layer as indented camelCase JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, s_json);

    public static RoutingStatistics FromJson(string json) =>
        JsonSerializer.Deserialize<RoutingStatistics>(json, s_json)
        ?? throw new JsonException("routing statistics JSON is empty");
}
