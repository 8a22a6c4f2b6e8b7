using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Generation;

/// <summary>When generation stops, besides sampling.</summary>
public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 128;
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;
    /// <summary>Stop (without emitting it) when the model produces one of the model's EOS ids.</summary>
    public bool StopOnEos { get; init; } = true;
    /// <summary>Further ids that end generation like EOS.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    /// <summary>Stop when the decoded text contains one of these (the template's turn separator); the stop string
    /// and anything after it are not emitted. Needs a text decoder in the request.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Precision of the KV cache: null lets the backend choose from the weights' dtype
    /// (<see cref="Backends.IBackend.KvCacheDType"/>: f32 for f32 weights, bf16 on the CPU otherwise).</summary>
    public DType? KvCacheDType { get; init; }

    public void Validate()
    {
        if (KvCacheDType is { } kv && kv is not (DType.F32 or DType.BF16))
            throw new ArgumentException($"the KV cache holds f32 or bf16, not {kv}");
        if (MaxNewTokens < 1) throw new ArgumentException($"max new tokens must be ≥ 1, got {MaxNewTokens}");
        ArgumentNullException.ThrowIfNull(Sampling);
        Sampling.Validate();
        foreach (string s in StopStrings)
            if (string.IsNullOrEmpty(s)) throw new ArgumentException("stop strings must not be empty");
    }
}

/// <summary>Turns generated ids into text incrementally (the tokenizer's streaming decoder: it never emits a
/// broken UTF-8 sequence and skips special tokens).</summary>
public interface ITokenTextDecoder
{
    string Push(int id);
    string Flush();
}

/// <summary>Called with the logits row each generated token is chosen from (step 0 = last prefill row).</summary>
public delegate void LogitsObserver(int step, ReadOnlySpan<float> logits);

/// <summary>One generation: prompt ids with image placeholders, the preprocessed images, and the settings.</summary>
public sealed record GenerationRequest
{
    /// <summary>Token ids; each <see cref="ImageTokenId"/> is replaced by the features of the next image.</summary>
    public required IReadOnlyList<int> PromptIds { get; init; }
    /// <summary>Preprocessed pixels [3, S, S] per placeholder, in prompt order.</summary>
    public IReadOnlyList<Tensor> Images { get; init; } = [];
    public GenerationOptions Options { get; init; } = new();
    /// <summary>Optional: makes <see cref="GeneratedToken.Text"/> and stop strings work.</summary>
    public ITokenTextDecoder? Decoder { get; init; }
    /// <summary>Runs on each forward context before use (e.g. to attach a routing recorder).</summary>
    public Action<ForwardContext>? ConfigureContext { get; init; }
    public LogitsObserver? ObserveLogits { get; init; }
    public int ImageTokenId { get; init; } = PromptSplicer.ImageTokenId;
}

/// <summary>A streamed token: its position in the output, its id and the text it released (may be empty while a
/// multi-byte character or a possible stop string is pending).</summary>
public sealed record GeneratedToken(int Index, int Id, string Text);

public enum StopReason
{
    /// <summary>The model produced an EOS or stop id.</summary>
    EndOfSequence,
    /// <summary>The decoded text reached a stop string.</summary>
    StopString,
    /// <summary><see cref="GenerationOptions.MaxNewTokens"/> tokens were produced.</summary>
    MaxTokens,
    /// <summary>The model's maximum position was reached.</summary>
    ContextFull,
}

public sealed record GenerationTimings
{
    public TimeSpan ImageEncoding { get; init; }
    /// <summary>Text embedding, splicing and the prefill forward (image encoding excluded).</summary>
    public TimeSpan Prefill { get; init; }
    /// <summary>All incremental decode steps.</summary>
    public TimeSpan Decode { get; init; }
    public int PromptTokens { get; init; }
    public int ImageTokens { get; init; }
    public int GeneratedTokens { get; init; }
    /// <summary>Decode forward calls (generated tokens minus the last one, which needs no forward).</summary>
    public int DecodeSteps { get; init; }

    public TimeSpan TimeToFirstToken => ImageEncoding + Prefill;
    public double DecodeTokensPerSecond => DecodeSteps == 0 || Decode <= TimeSpan.Zero ? 0 : DecodeSteps / Decode.TotalSeconds;
    public double PrefillTokensPerSecond => Prefill <= TimeSpan.Zero ? 0 : PromptTokens / Prefill.TotalSeconds;
}

public sealed record GenerationResult
{
    /// <summary>Generated ids (a stopping EOS / stop id is not included).</summary>
    public required int[] TokenIds { get; init; }
    /// <summary>Decoded text without the stop string (empty without a decoder).</summary>
    public required string Text { get; init; }
    public required StopReason StopReason { get; init; }
    public required GenerationTimings Timings { get; init; }
    /// <summary>Length of the spliced prompt (text tokens plus image feature rows).</summary>
    public required int SequenceLength { get; init; }
}
