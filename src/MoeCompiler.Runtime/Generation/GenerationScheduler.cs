using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;

namespace MoeCompiler.Runtime.Generation;

/// <summary>Limits of a <see cref="GenerationScheduler"/>.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Sequences generating at once (stepped together); further requests wait in the queue.</summary>
    public int MaxConcurrentSequences { get; init; } = 4;
    /// <summary>Requests waiting for a free slot; one more is refused with <see cref="SchedulerFullException"/>.</summary>
    public int MaxQueueLength { get; init; } = 64;
    /// <summary>Prompt rows per prefill step; a longer prompt is prefilled in chunks between decode steps. 0: whole prompts.</summary>
    public int PrefillChunkTokens { get; init; } = 256;

    public void Validate()
    {
        if (MaxConcurrentSequences < 1) throw new ArgumentException($"MaxConcurrentSequences must be ≥ 1, got {MaxConcurrentSequences}");
        if (MaxQueueLength < 0) throw new ArgumentException($"MaxQueueLength must be ≥ 0, got {MaxQueueLength}");
        if (PrefillChunkTokens < 0) throw new ArgumentException($"PrefillChunkTokens must be ≥ 0, got {PrefillChunkTokens}");
    }
}

/// <summary>The scheduler's queue is full: retry later (a server answers 429 / 503).</summary>
public sealed class SchedulerFullException(string message) : InvalidOperationException(message);

/// <summary>
/// Serves many generations over one loaded model. FIRST VERSION: requests run one at a time in arrival order (a
/// semaphore over <see cref="TextGenerator"/>), not yet batched; the API is final.
/// </summary>
public sealed class GenerationScheduler : IDisposable
{
    private readonly ILanguageModel _model;
    private readonly IBackend _backend;
    private readonly SchedulerOptions _options;
    private readonly SemaphoreSlim _running = new(1, 1);
    private int _admitted;
    private volatile bool _disposed;

    public GenerationScheduler(LoadedModel model, SchedulerOptions? options = null)
        : this((model ?? throw new ArgumentNullException(nameof(model))).Model, model.Backend, options)
    {
    }

    /// <summary>Over a bound model without a <see cref="LoadedModel"/> (tests, tools).</summary>
    public GenerationScheduler(ILanguageModel model, IBackend backend, SchedulerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(backend);
        _options = options ?? new SchedulerOptions();
        _options.Validate();
        _model = model;
        _backend = backend;
    }

    public SchedulerOptions Options => _options;

    /// <summary>
    /// Queues a generation; the task completes with its result. Safe to call from many threads at once. Cancelling
    /// removes the sequence at its next step (the task is then cancelled). A full queue throws
    /// <see cref="SchedulerFullException"/> at once.
    /// </summary>
    public Task<GenerationResult> GenerateAsync(GenerationRequest request, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Interlocked.Increment(ref _admitted) > _options.MaxConcurrentSequences + _options.MaxQueueLength)
        {
            Interlocked.Decrement(ref _admitted);
            throw new SchedulerFullException($"the generation queue is full ({_options.MaxQueueLength} waiting, {_options.MaxConcurrentSequences} running)");
        }
        return Task.Run(async () =>
        {
            try
            {
                await _running.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    return new TextGenerator(_model, _backend).Generate(request, onToken, cancellationToken);
                }
                finally
                {
                    _running.Release();
                }
            }
            finally
            {
                Interlocked.Decrement(ref _admitted);
            }
        }, CancellationToken.None);
    }

    public void Dispose()
    {
        _disposed = true;
    }
}
