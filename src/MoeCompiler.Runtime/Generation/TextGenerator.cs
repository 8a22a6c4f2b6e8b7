using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;

namespace MoeCompiler.Runtime.Generation;

/// <summary>
/// Drives a compiled variant: splices the prompt, runs one prefill over the whole sequence (filling the KV cache),
/// then decodes one token per forward call until EOS, a stop string, the token limit or the context limit.
/// Each call has its own KV cache and contexts; the model's modules keep scratch buffers, so run one generation
/// at a time per model instance.
/// </summary>
public sealed class TextGenerator
{
    private readonly IVisionLanguageModel _model;
    private readonly IBackend _backend;

    public TextGenerator(IVisionLanguageModel model, IBackend backend)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(backend);
        _model = model;
        _backend = backend;
    }

    public IVisionLanguageModel Model => _model;

    /// <summary>Runs the generation on the calling thread; <paramref name="onToken"/> sees each token as it is made.
    /// Cancellation throws <see cref="OperationCanceledException"/> between forward calls.</summary>
    public GenerationResult Generate(GenerationRequest request, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var options = request.Options;
        options.Validate();
        if (options.StopStrings.Count > 0 && request.Decoder is null)
            throw new ArgumentException("stop strings need a text decoder in the request");
        cancellationToken.ThrowIfCancellationRequested();
        var description = _model.Description;

        var visionContext = new ForwardContext(_backend);
        request.ConfigureContext?.Invoke(visionContext);
        var embeddingContext = new ForwardContext(_backend);
        request.ConfigureContext?.Invoke(embeddingContext);

        long t0 = Stopwatch.GetTimestamp();
        var spliced = PromptSplicer.Splice(_model, visionContext, embeddingContext, request.PromptIds, request.Images, request.ImageTokenId);
        int length = spliced.Length;
        if (length > description.MaxPositions)
            throw new ModelInputException($"the prompt needs {length} positions ({spliced.ImageTokens} for images) but {description.Name} supports {description.MaxPositions}");
        cancellationToken.ThrowIfCancellationRequested();

        int capacity = (int)Math.Min(description.MaxPositions, (long)length + options.MaxNewTokens);
        var cacheDType = options.KvCacheDType ?? _backend.KvCacheDType(_model.LlmWeightDType);
        var cache = new KvCache(_backend, description.Layers, capacity, description.KvHeads * description.HeadDim, cacheDType);
        var context = new ForwardContext(_backend, cache) { StartPosition = 0, IsImageToken = spliced.IsImageToken, LastRowLogitsOnly = true };
        request.ConfigureContext?.Invoke(context);
        var logits = _model.Forward(context, spliced.Embeddings);
        cache.Length = length;
        float[] row = new float[description.VocabSize];
        ReadLastRow(logits, row);
        TensorLifetime.Release(logits);
        var prefillTime = Stopwatch.GetElapsedTime(t0) - spliced.ImageEncoding;

        var sampler = new Sampler(options.Sampling, Math.Min(description.TokenizerSize, description.VocabSize));
        var stopIds = new HashSet<int>(options.StopTokenIds);
        if (options.StopOnEos) stopIds.UnionWith(description.EosIds);
        var matcher = options.StopStrings.Count > 0 ? new StopStringMatcher(options.StopStrings) : null;
        var history = new List<int>(request.PromptIds.Count + options.MaxNewTokens);
        foreach (int id in request.PromptIds) if (id >= 0) history.Add(id);
        var generated = new List<int>();
        var text = new System.Text.StringBuilder();
        StopReason reason = StopReason.MaxTokens;
        int decodeSteps = 0;
        long decodeStart = Stopwatch.GetTimestamp();
        int[] single = new int[1];

        for (int step = 0; ; step++)
        {
            request.ObserveLogits?.Invoke(step, row);
            int next = sampler.Next(row, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history));
            if (stopIds.Contains(next)) { reason = StopReason.EndOfSequence; break; }
            generated.Add(next);
            history.Add(next);
            string piece = request.Decoder?.Push(next) ?? "";
            if (matcher is not null) piece = matcher.Push(piece);
            text.Append(piece);
            onToken?.Invoke(new GeneratedToken(generated.Count - 1, next, piece));
            if (matcher is { Stopped: true }) { reason = StopReason.StopString; break; }
            if (generated.Count >= options.MaxNewTokens) { reason = StopReason.MaxTokens; break; }
            if (cache.Length >= capacity) { reason = StopReason.ContextFull; break; }
            cancellationToken.ThrowIfCancellationRequested();

            single[0] = next;
            context.StartPosition = cache.Length;
            context.IsImageToken = [false];
            Tensors.Tensor? stepLogits = null;
            _backend.RunDecodeStep(() =>
            {
                var embedding = _model.EmbedTokens(context, single);
                stepLogits = _model.Forward(context, embedding);
                TensorLifetime.Release(embedding);
            });
            logits = stepLogits!;
            cache.Length = context.StartPosition + 1;
            ReadLastRow(logits, row);
            TensorLifetime.Release(logits);
            decodeSteps++;
        }
        var decodeTime = Stopwatch.GetElapsedTime(decodeStart);

        if (reason != StopReason.StopString && request.Decoder is not null)
        {
            string tail = request.Decoder.Flush();
            if (matcher is not null) tail = matcher.Push(tail) + (matcher.Stopped ? "" : matcher.Flush());
            if (tail.Length > 0)
            {
                text.Append(tail);
                onToken?.Invoke(new GeneratedToken(generated.Count, -1, tail));
            }
            if (matcher is { Stopped: true }) reason = StopReason.StopString;
        }

        return new GenerationResult
        {
            TokenIds = generated.ToArray(),
            Text = text.ToString(),
            StopReason = reason,
            SequenceLength = length,
            Timings = new GenerationTimings
            {
                ImageEncoding = spliced.ImageEncoding,
                Prefill = prefillTime,
                Decode = decodeTime,
                PromptTokens = length,
                ImageTokens = spliced.ImageTokens,
                GeneratedTokens = generated.Count,
                DecodeSteps = decodeSteps,
            },
        };
    }

    /// <summary>Runs <see cref="Generate"/> on a worker thread.</summary>
    public Task<GenerationResult> GenerateAsync(GenerationRequest request, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
        => Task.Run(() => Generate(request, onToken, cancellationToken), cancellationToken);

    /// <summary>
    /// Streams the tokens as they are produced (generation runs on a worker thread). Leaving the loop early
    /// cancels the generation. The final flushed text, if any, arrives as a token with id −1.
    /// </summary>
    public async IAsyncEnumerable<GeneratedToken> StreamAsync(GenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var channel = Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var worker = Task.Run(() =>
        {
            try
            {
                Generate(request, t => channel.Writer.TryWrite(t), linked.Token);
                channel.Writer.TryComplete();
            }
            catch (Exception e)
            {
                channel.Writer.TryComplete(e);
            }
        }, CancellationToken.None);
        try
        {
            await foreach (var token in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                yield return token;
        }
        finally
        {
            linked.Cancel();
            await worker.ConfigureAwait(false); // never throws: failures travel through the channel
        }
    }

    /// <summary>The logits of the last position, [T, vocab] → row.</summary>
    private void ReadLastRow(Tensors.Tensor logits, float[] row)
    {
        if (logits.Rank != 2 || logits.Dim(1) != row.Length || logits.Dim(0) < 1)
            throw new InvalidOperationException($"{_model.Description.Name} returned logits {Tensors.Tensor.FormatShape(logits.Shape)}, expected [rows, {row.Length}]");
        _backend.Download(logits.SliceRows(logits.Dim(0) - 1, 1), row);
    }
}
