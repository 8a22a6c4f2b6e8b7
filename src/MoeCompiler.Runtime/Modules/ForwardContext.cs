using MoeCompiler.Runtime.Backends;

namespace MoeCompiler.Runtime.Modules;

/// <summary>What one forward call needs besides weights and activations.</summary>
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
}
