using MoeCompiler.Runtime.Backends;

namespace MoeCompiler.Runtime.Modules;

/// <summary>
/// What one forward call needs besides weights and activations. A context belongs to one call on one thread; the
/// model's modules hold no per-call state, so any number of contexts may run over one model at once.
/// </summary>
public sealed class ForwardContext
{
    public ForwardContext(IBackend backend, KvCache? cache = null)
    {
        Backend = backend;
        Cache = cache;
    }

    public IBackend Backend { get; }
    /// <summary>Null for bidirectional encoders (vision towers).</summary>
    public KvCache? Cache { get; }
    /// <summary>Absolute position of the first row of this call (the cache length before it).</summary>
    public int StartPosition { get; set; }
    /// <summary>Per row of this call: true for image tokens (routing statistics split text and image).</summary>
    public bool[]? IsImageToken { get; set; }

    /// <summary>
    /// When set, a language model's Forward returns logits for the last row only ([1, vocab]): generation needs no
    /// others, and lm_head over every prompt row is the largest avoidable cost of a long prefill.
    /// </summary>
    public bool LastRowLogitsOnly { get; set; }

    /// <summary>When set, every MoE layer records its routing decisions here (see <see cref="RoutingRecorder"/>).</summary>
    public RoutingRecorder? Routing { get; set; }

    /// <summary>
    /// Source of the Gumbel noise for <see cref="SecondExpertPolicy.Sampled"/> (and of DeepSpeed's random token
    /// selection for top-1). Seed it for reproducible runs; required only when a layer samples.
    /// </summary>
    public Random? Random { get; set; }

    /// <summary>
    /// Batched decode: the rows of this call are the rows of several sequences stacked in this order, each with its
    /// own KV cache, position, image mask, routing recorder and random source (<see cref="Cache"/> must then be null,
    /// and <see cref="StartPosition"/>, <see cref="IsImageToken"/>, <see cref="Routing"/> and <see cref="Random"/> are
    /// not used by the decoder layers). Attention and MoE routing run per segment; norms, linear layers and experts run
    /// on the stacked rows, so each weight is streamed once for all sequences. With
    /// <see cref="LastRowLogitsOnly"/>, the logits are the last row of every segment ([segments, vocab]).
    /// </summary>
    public IReadOnlyList<SequenceSegment>? Segments { get; set; }

    /// <summary>
    /// Compute every linear layer row by row with the single-row arithmetic (<see cref="Backends.IBackend.LinearRows"/>),
    /// so that each row's result is bit-identical to a call with that row alone. Set for batched decode.
    /// </summary>
    public bool RowIndependentLinear { get; set; }

    /// <summary>
    /// The rows a language model's lm_head runs on: all of <paramref name="hidden"/>, its last row
    /// (<see cref="LastRowLogitsOnly"/>), or with <see cref="Segments"/> the last row of every segment (a new tensor
    /// when the segments have several rows each). Generated code calls this before the final norm.
    /// </summary>
    public Tensors.Tensor LogitRows(Tensors.Tensor hidden)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        if (!LastRowLogitsOnly) return hidden;
        if (Segments is not { } segments) return hidden.Rows > 1 ? hidden.SliceRows(hidden.Rows - 1, 1) : hidden;
        if (segments.Count == hidden.Rows) return hidden; // one row per segment (decode)
        var lastRows = new int[segments.Count];
        int end = 0;
        for (int i = 0; i < segments.Count; i++)
        {
            end += segments[i].Rows;
            lastRows[i] = end - 1;
        }
        if (end != hidden.Rows)
            throw new InvalidOperationException($"the segments hold {end} rows; the call has {hidden.Rows}");
        var gathered = Backend.Allocate(Tensors.DType.F32, segments.Count, hidden.Columns);
        Backend.GatherRows(hidden, lastRows, gathered);
        return gathered;
    }

    /// <summary>Sets each segment's cache length after a batched call (the generated Forward does it for <see cref="Cache"/>).</summary>
    public void AdvanceSegmentCaches()
    {
        if (Segments is not { } segments) return;
        foreach (var segment in segments) segment.Cache.Length = segment.StartPosition + segment.Rows;
    }
}

/// <summary>One sequence's rows in a batched forward call (<see cref="ForwardContext.Segments"/>).</summary>
public sealed class SequenceSegment
{
    public SequenceSegment(KvCache cache, int startPosition, int rows)
    {
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentOutOfRangeException.ThrowIfNegative(startPosition);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        Cache = cache;
        StartPosition = startPosition;
        Rows = rows;
    }

    public KvCache Cache { get; }
    /// <summary>Absolute position of the segment's first row (its cache length before the call).</summary>
    public int StartPosition { get; }
    public int Rows { get; }
    /// <summary>Per row of the segment: true for image tokens; null: all text.</summary>
    public bool[]? IsImageToken { get; init; }
    public RoutingRecorder? Routing { get; init; }
    public Random? Random { get; init; }
}
