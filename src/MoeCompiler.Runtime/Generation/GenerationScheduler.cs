using System.Diagnostics;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

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
/// Serves many generations over one loaded model by stepping them together (continuous batching on one thread).
/// Each step runs one decode forward for every sequence that is decoding, their rows stacked: norms, linear layers
/// and the MoE experts run on all rows at once (the MoE layer groups the rows of all sequences by expert), so every
/// weight is streamed from memory once per step instead of once per sequence; attention and routing are each
/// sequence's own. Then at most one prompt chunk (<see cref="SchedulerOptions.PrefillChunkTokens"/> rows) of a
/// sequence that is still prefilling runs, so a long prompt does not stall the others. Sequences join between steps
/// (up to <see cref="SchedulerOptions.MaxConcurrentSequences"/>; the rest wait in a bounded queue) and leave when
/// they stop or are cancelled.
/// <para>What a sequence gets does not depend on the others: a decode row is computed with the one-row arithmetic
/// (<see cref="IBackend.LinearRows"/>) and routed alone, so its logits are bit-identical to running it alone through
/// the scheduler, for f32 and bf16 weights. A prompt that fits in one chunk is prefilled exactly as
/// <see cref="TextGenerator"/> does, so such a sequence's tokens equal <see cref="LoadedModel.Generate"/>'s; a longer
/// prompt's chunks are separate forward calls (other GEMM row blocks, and DeepSpeed's capacity counted per chunk),
/// which may change the last bits of its logits compared with one whole-prompt call. Set
/// <see cref="SchedulerOptions.PrefillChunkTokens"/> to 0 to prefill whole prompts.</para>
/// </summary>
public sealed class GenerationScheduler : IDisposable
{
    private readonly ILanguageModel _model;
    private readonly IBackend _backend;
    private readonly SchedulerOptions _options;
    private readonly object _gate = new();
    private readonly Queue<Entry> _queue = new();
    private readonly List<Entry> _active = [];
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _loop;
    private bool _disposed;
    private int _nextPrefill;

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
        _loop = new Thread(Loop) { IsBackground = true, Name = "moe-scheduler" };
        _loop.Start();
    }

    public SchedulerOptions Options => _options;

    /// <summary>Sequences being generated now and requests waiting for a slot.</summary>
    public (int Active, int Queued) Load
    {
        get { lock (_gate) return (_active.Count, _queue.Count); }
    }

    /// <summary>Decode steps run so far, the sequence rows they carried (rows / steps is the mean batch size) and the
    /// time spent in their forward calls.</summary>
    public (long Steps, long Rows, TimeSpan ForwardTime) DecodeStatistics
    {
        get { lock (_gate) return (_decodeSteps, _decodeRows, Stopwatch.GetElapsedTime(0, _decodeForwardTicks)); }
    }

    private long _decodeSteps, _decodeRows, _decodeForwardTicks;
    private int _unfinished;

    /// <summary>
    /// Queues a generation; the task completes with its result. Safe to call from many threads at once.
    /// <paramref name="onToken"/> runs on the scheduler's thread between steps: keep it short (hand the token to a
    /// channel); an exception from it fails only this request. Cancelling removes the sequence at the next step
    /// (the task is then cancelled). A full queue throws <see cref="SchedulerFullException"/> at once; a bad request
    /// fails the task (<see cref="ModelInputException"/>, <see cref="ArgumentException"/>).
    /// </summary>
    public Task<GenerationResult> GenerateAsync(GenerationRequest request, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var entry = new Entry(request, onToken, cancellationToken, () => Interlocked.Decrement(ref _unfinished));
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            // Every request not yet settled counts, also one the loop has taken from the queue but not yet admitted.
            if (Volatile.Read(ref _unfinished) >= _options.MaxConcurrentSequences + _options.MaxQueueLength)
                throw new SchedulerFullException(
                    $"the generation queue is full ({_queue.Count} waiting, {_active.Count} of {_options.MaxConcurrentSequences} running)");
            Interlocked.Increment(ref _unfinished);
        }
        if (cancellationToken.CanBeCanceled)
            entry.Registration = cancellationToken.Register(static state => ((SemaphoreSlim)state!).Release(), _wake);
        // Validation, image encoding and prompt embedding run on the thread pool, not on the stepping thread: a
        // request with images must not stall the streams already decoding (their kernels interleave instead).
        _ = Task.Run(() => Prepare(entry), CancellationToken.None);
        return entry.Completion.Task;
    }

    private void Loop()
    {
        while (true)
        {
            List<Entry> admitted;
            lock (_gate)
            {
                if (_disposed) break;
                admitted = [];
                while (_active.Count + admitted.Count < _options.MaxConcurrentSequences && _queue.TryDequeue(out var next))
                    admitted.Add(next);
            }
            try
            {
                foreach (var entry in admitted) Admit(entry);
                RemoveCancelled();
                bool idle;
                lock (_gate) idle = _active.Count == 0;
                if (idle)
                {
                    _wake.Wait();
                    continue;
                }
                DecodeStep();
                PrefillStep();
                RemoveFinished();
            }
            catch (Exception e)
            {
                // A bug in the step logic must not leave callers waiting forever.
                FailAll(e);
            }
        }
        FailAll(new ObjectDisposedException(nameof(GenerationScheduler)));
    }

    /// <summary>Validates the request, encodes its images and embeds its prompt, then queues it; a failure fails only
    /// this request.</summary>
    private void Prepare(Entry entry)
    {
        try
        {
            entry.Sequence = new GenerationSequence(_model, _backend, entry.Request, entry.OnToken, entry.CancellationToken);
        }
        catch (Exception e)
        {
            entry.Fail(e);
            return;
        }
        lock (_gate)
        {
            if (_disposed)
            {
                entry.Fail(new ObjectDisposedException(nameof(GenerationScheduler)));
                return;
            }
            _queue.Enqueue(entry);
        }
        _wake.Release();
    }

    private void Admit(Entry entry)
    {
        if (entry.CancellationToken.IsCancellationRequested)
        {
            entry.Cancel();
            return;
        }
        lock (_gate) _active.Add(entry);
    }

    private void RemoveCancelled()
    {
        lock (_gate)
        {
            for (int i = _active.Count - 1; i >= 0; i--)
            {
                if (!_active[i].CancellationToken.IsCancellationRequested) continue;
                _active[i].Cancel();
                _active.RemoveAt(i);
            }
        }
    }

    private void RemoveFinished()
    {
        lock (_gate)
        {
            for (int i = _active.Count - 1; i >= 0; i--)
            {
                var entry = _active[i];
                if (entry.Done) _active.RemoveAt(i);
                else if (entry.Sequence!.Finished)
                {
                    entry.Complete();
                    _active.RemoveAt(i);
                }
            }
        }
    }

    /// <summary>One forward call for the pending token of every decoding sequence, their rows stacked.</summary>
    private void DecodeStep()
    {
        var decoding = new List<Entry>();
        lock (_gate)
            foreach (var entry in _active)
                if (!entry.Done && entry.Sequence is { Prefilling: false, Finished: false }) decoding.Add(entry);
        if (decoding.Count == 0) return;

        var ids = new int[decoding.Count];
        var segments = new SequenceSegment[decoding.Count];
        for (int i = 0; i < decoding.Count; i++)
        {
            ids[i] = decoding[i].Sequence!.PendingToken;
            segments[i] = decoding[i].Sequence!.DecodeSegment();
        }
        var context = new ForwardContext(_backend) { Segments = segments, LastRowLogitsOnly = true, RowIndependentLinear = true };
        Tensor? logits = null;
        long start = Stopwatch.GetTimestamp();
        try
        {
            var embeddings = _model.EmbedTokens(context, ids);
            logits = _model.Forward(context, embeddings);
            TensorLifetime.Release(embeddings);
        }
        catch (Exception e)
        {
            // A failed shared step leaves every participant's cache half written: fail them all.
            foreach (var entry in decoding) entry.Fail(e);
            return;
        }
        lock (_gate)
        {
            _decodeSteps++;
            _decodeRows += decoding.Count;
            _decodeForwardTicks += Stopwatch.GetTimestamp() - start;
        }
        for (int i = 0; i < decoding.Count; i++)
        {
            try
            {
                decoding[i].Sequence!.AcceptDecodeLogits(logits, i);
            }
            catch (Exception e)
            {
                decoding[i].Fail(e);
            }
        }
        TensorLifetime.Release(logits);
    }

    /// <summary>The next prompt chunk of one prefilling sequence (round robin).</summary>
    private void PrefillStep()
    {
        Entry? chosen = null;
        lock (_gate)
        {
            for (int n = 0; n < _active.Count && chosen is null; n++)
            {
                var entry = _active[(_nextPrefill + n) % _active.Count];
                if (!entry.Done && entry.Sequence!.Prefilling) chosen = entry;
            }
            _nextPrefill = _active.Count == 0 ? 0 : (_nextPrefill + 1) % _active.Count;
        }
        if (chosen is null) return;
        try
        {
            chosen.Sequence!.PrefillChunk(_options.PrefillChunkTokens);
        }
        catch (Exception e)
        {
            chosen.Fail(e);
        }
    }

    private void FailAll(Exception error)
    {
        lock (_gate)
        {
            foreach (var entry in _active) entry.Fail(error);
            while (_queue.TryDequeue(out var entry)) entry.Fail(error);
            _active.Clear();
        }
    }

    /// <summary>Stops the scheduler: running and queued requests fail with <see cref="ObjectDisposedException"/>.
    /// Returns after the step in progress.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }
        _wake.Release();
        if (Thread.CurrentThread != _loop) _loop.Join();
        // _wake is not disposed: a late cancellation callback may still release it.
    }

    private sealed class Entry(GenerationRequest request, Action<GeneratedToken>? onToken, CancellationToken cancellationToken, Action onSettled)
    {
        private int _settled;

        public GenerationRequest Request { get; } = request;
        public Action<GeneratedToken>? OnToken { get; } = onToken;
        public CancellationToken CancellationToken { get; } = cancellationToken;
        public TaskCompletionSource<GenerationResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public GenerationSequence? Sequence { get; set; }
        public CancellationTokenRegistration Registration { get; set; }
        public bool Done => Completion.Task.IsCompleted;

        /// <summary>Frees the request's place in the scheduler (before the caller sees the result, so it may send the next).</summary>
        private void Settle()
        {
            Registration.Dispose();
            if (Interlocked.Exchange(ref _settled, 1) == 0) onSettled();
        }

        public void Complete()
        {
            Settle();
            try
            {
                Completion.TrySetResult(Sequence!.Result());
            }
            catch (Exception e)
            {
                Completion.TrySetException(e);
            }
        }

        public void Fail(Exception e)
        {
            Settle();
            if (e is OperationCanceledException && CancellationToken.IsCancellationRequested) Completion.TrySetCanceled(CancellationToken);
            else Completion.TrySetException(e);
        }

        public void Cancel()
        {
            Settle();
            Completion.TrySetCanceled(CancellationToken);
        }
    }
}
