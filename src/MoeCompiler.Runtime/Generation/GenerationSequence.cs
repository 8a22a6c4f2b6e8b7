using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Generation;

/// <summary>
/// One generation's state, stepped from outside: its KV cache, forward context (routing recorder, random source),
/// sampler, stop rules and output. <see cref="TextGenerator"/> steps one alone; <see cref="GenerationScheduler"/>
/// steps several, their decode rows stacked into one forward call. Both go through the same methods, so a sequence
/// samples, stops and streams the same way in either.
/// </summary>
internal sealed class GenerationSequence
{
    private readonly ILanguageModel _model;
    private readonly IBackend _backend;
    private readonly GenerationRequest _request;
    private readonly GenerationOptions _options;
    private readonly Action<GeneratedToken>? _onToken;
    private readonly SplicedSequence _spliced;
    private readonly KvCache _cache;
    private readonly int _capacity;
    private readonly float[] _row;
    private readonly int[] _single = new int[1];
    private readonly Sampler _sampler;
    private readonly HashSet<int> _stopIds;
    private readonly StopStringMatcher? _matcher;
    private readonly List<int> _history;
    private readonly List<int> _generated = [];
    private readonly StringBuilder _text = new();
    private readonly TimeSpan _spliceTime;
    private TimeSpan _prefillForwardTime;
    private long _decodeStart;
    private TimeSpan _decodeTime;
    private int _prefilled;
    private int _step;
    private int _decodeSteps;
    private StopReason _reason = StopReason.MaxTokens;

    /// <summary>Validates the request, encodes its images and embeds its prompt (nothing is run through the decoder yet).</summary>
    public GenerationSequence(ILanguageModel model, IBackend backend, GenerationRequest request, Action<GeneratedToken>? onToken,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        _model = model;
        _backend = backend;
        _request = request;
        _onToken = onToken;
        _options = request.Options;
        _options.Validate();
        if (_options.StopStrings.Count > 0 && request.Decoder is null)
            throw new ArgumentException("stop strings need a text decoder in the request");
        cancellationToken.ThrowIfCancellationRequested();
        var description = model.Description;

        var visionContext = new ForwardContext(backend);
        request.ConfigureContext?.Invoke(visionContext);
        var embeddingContext = new ForwardContext(backend);
        request.ConfigureContext?.Invoke(embeddingContext);

        long t0 = Stopwatch.GetTimestamp();
        _spliced = PromptSplicer.Splice(model, visionContext, embeddingContext, request.PromptIds, request.Images, request.ImageTokenId);
        int length = _spliced.Length;
        if (length > description.MaxPositions)
            throw new ModelInputException($"the prompt needs {length} positions ({_spliced.ImageTokens} for images) but {description.Name} supports {description.MaxPositions}");
        _spliceTime = Stopwatch.GetElapsedTime(t0) - _spliced.ImageEncoding;

        _capacity = (int)Math.Min(description.MaxPositions, (long)length + _options.MaxNewTokens);
        var cacheDType = _options.KvCacheDType ?? backend.KvCacheDType(model.LlmWeightDType);
        _cache = new KvCache(backend, description.Layers, _capacity, description.KvHeads * description.HeadDim, cacheDType);
        Context = new ForwardContext(backend, _cache) { StartPosition = 0, IsImageToken = _spliced.IsImageToken, LastRowLogitsOnly = true };
        request.ConfigureContext?.Invoke(Context);

        _row = new float[description.VocabSize];
        _sampler = new Sampler(_options.Sampling, Math.Min(description.TokenizerSize, description.VocabSize));
        _stopIds = new HashSet<int>(_options.StopTokenIds);
        if (_options.StopOnEos) _stopIds.UnionWith(description.EosIds);
        _matcher = _options.StopStrings.Count > 0 ? new StopStringMatcher(_options.StopStrings) : null;
        _history = new List<int>(request.PromptIds.Count + _options.MaxNewTokens);
        foreach (int id in request.PromptIds) if (id >= 0) _history.Add(id);
    }

    /// <summary>The context of this sequence's own forward calls (prefill, lone decode): its cache, recorder and random source.</summary>
    public ForwardContext Context { get; }
    public int PromptLength => _spliced.Length;
    public bool Prefilling => _prefilled < _spliced.Length;
    public bool Finished { get; private set; }
    /// <summary>The token to run through the model next (valid while neither prefilling nor finished).</summary>
    public int PendingToken { get; private set; }
    public int CacheLength => _cache.Length;

    /// <summary>
    /// Runs the next prompt rows (at most <paramref name="maxRows"/>, all when ≤ 0) through the model. After the last
    /// chunk the first token is sampled. Chunk boundaries depend only on the prompt and the chunk size.
    /// </summary>
    public void PrefillChunk(int maxRows)
    {
        if (!Prefilling) throw new InvalidOperationException("the prompt is already prefilled");
        int start = _prefilled, rows = _spliced.Length - start;
        if (maxRows > 0) rows = Math.Min(rows, maxRows);
        long t0 = Stopwatch.GetTimestamp();
        bool whole = start == 0 && rows == _spliced.Length;
        Context.StartPosition = start;
        Context.IsImageToken = whole ? _spliced.IsImageToken : _spliced.IsImageToken[start..(start + rows)];
        var logits = _model.Forward(Context, whole ? _spliced.Embeddings : _spliced.Embeddings.SliceRows(start, rows));
        _cache.Length = start + rows;
        _prefilled = start + rows;
        if (!Prefilling)
        {
            ReadRow(logits, logits.Rank == 2 ? logits.Dim(0) - 1 : 0);
            TensorLifetime.Release(logits);
            _prefillForwardTime += Stopwatch.GetElapsedTime(t0);
            _decodeStart = Stopwatch.GetTimestamp();
            Sample();
        }
        else
        {
            TensorLifetime.Release(logits);
            _prefillForwardTime += Stopwatch.GetElapsedTime(t0);
        }
    }

    /// <summary>One decode forward of <see cref="PendingToken"/> on this sequence alone, then the next token.</summary>
    public void DecodeAlone()
    {
        RequireDecoding();
        // The same one-token array every step: a backend that captures the step (CUDA graphs) replays it with the
        // array's new contents.
        _single[0] = PendingToken;
        Context.StartPosition = _cache.Length;
        Context.IsImageToken = [false];
        Tensor? stepLogits = null;
        _backend.RunDecodeStep(() =>
        {
            var embedding = _model.EmbedTokens(Context, _single);
            stepLogits = _model.Forward(Context, embedding);
            TensorLifetime.Release(embedding);
        });
        var logits = stepLogits!;
        _cache.Length = Context.StartPosition + 1;
        ReadRow(logits, logits.Rank == 2 ? logits.Dim(0) - 1 : 0);
        TensorLifetime.Release(logits);
        _decodeSteps++;
        Sample();
    }

    /// <summary>This sequence's row in a batched decode call: its cache at its position, its recorder and random source.</summary>
    public SequenceSegment DecodeSegment()
    {
        RequireDecoding();
        return new SequenceSegment(_cache, _cache.Length, 1) { IsImageToken = [false], Routing = Context.Routing, Random = Context.Random };
    }

    /// <summary>Takes row <paramref name="row"/> of a batched call's logits (the call advanced the cache) and samples the next token.</summary>
    public void AcceptDecodeLogits(Tensor logits, int row)
    {
        RequireDecoding();
        ReadRow(logits, row);
        _decodeSteps++;
        Sample();
    }

    private void RequireDecoding()
    {
        if (Prefilling || Finished) throw new InvalidOperationException("the sequence is not decoding");
    }

    /// <summary>Chooses the next token from <see cref="_row"/>, streams it and applies the stop rules.</summary>
    private void Sample()
    {
        _request.ObserveLogits?.Invoke(_step++, _row);
        int next = _sampler.Next(_row, CollectionsMarshal.AsSpan(_history));
        if (_stopIds.Contains(next)) { Finish(StopReason.EndOfSequence); return; }
        _generated.Add(next);
        _history.Add(next);
        string piece = _request.Decoder?.Push(next) ?? "";
        if (_matcher is not null) piece = _matcher.Push(piece);
        _text.Append(piece);
        _onToken?.Invoke(new GeneratedToken(_generated.Count - 1, next, piece));
        if (_matcher is { Stopped: true }) { Finish(StopReason.StopString); return; }
        if (_generated.Count >= _options.MaxNewTokens) { Finish(StopReason.MaxTokens); return; }
        if (_cache.Length >= _capacity) { Finish(StopReason.ContextFull); return; }
        PendingToken = next;
    }

    private void Finish(StopReason reason)
    {
        _reason = reason;
        _decodeTime = Stopwatch.GetElapsedTime(_decodeStart);
        Finished = true;
        if (reason != StopReason.StopString && _request.Decoder is not null)
        {
            string tail = _request.Decoder.Flush();
            if (_matcher is not null) tail = _matcher.Push(tail) + (_matcher.Stopped ? "" : _matcher.Flush());
            if (tail.Length > 0)
            {
                _text.Append(tail);
                _onToken?.Invoke(new GeneratedToken(_generated.Count, -1, tail));
            }
            if (_matcher is { Stopped: true }) _reason = StopReason.StopString;
        }
    }

    public GenerationResult Result()
    {
        if (!Finished) throw new InvalidOperationException("the sequence has not finished");
        return new GenerationResult
        {
            TokenIds = _generated.ToArray(),
            Text = _text.ToString(),
            StopReason = _reason,
            SequenceLength = _spliced.Length,
            Timings = new GenerationTimings
            {
                ImageEncoding = _spliced.ImageEncoding,
                Prefill = _spliceTime + _prefillForwardTime,
                Decode = _decodeTime,
                PromptTokens = _spliced.Length,
                ImageTokens = _spliced.ImageTokens,
                GeneratedTokens = _generated.Count,
                DecodeSteps = _decodeSteps,
            },
        };
    }

    /// <summary>Row <paramref name="row"/> of logits [rows, vocab].</summary>
    private void ReadRow(Tensor logits, int row)
    {
        if (logits.Rank != 2 || logits.Dim(1) != _row.Length || row < 0 || logits.Dim(0) <= row)
            throw new InvalidOperationException($"{_model.Description.Name} returned logits {Tensor.FormatShape(logits.Shape)}, expected [rows, {_row.Length}]");
        _backend.Download(logits.SliceRows(row, 1), _row);
    }
}
