using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;

namespace MoeCompiler.Runtime.Generation;

/// <summary>
/// Drives a compiled variant: splices the prompt, runs one prefill over the whole sequence (filling the KV cache),
/// then decodes one token per forward call until EOS, a stop string, the token limit or the context limit.
/// Each call has its own KV cache and contexts and the model's modules keep no per-call state, so any number of
/// generations may run over one model instance from different threads (see docs/architecture.md, "Threads");
/// <see cref="GenerationScheduler"/> steps several together instead.
/// </summary>
public sealed class TextGenerator
{
    private readonly ILanguageModel _model;
    private readonly IBackend _backend;

    public TextGenerator(ILanguageModel model, IBackend backend)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(backend);
        _model = model;
        _backend = backend;
    }

    public ILanguageModel Model => _model;

    /// <summary>Runs the generation on the calling thread; <paramref name="onToken"/> sees each token as it is made.
    /// Cancellation throws <see cref="OperationCanceledException"/> between forward calls.</summary>
    public GenerationResult Generate(GenerationRequest request, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var sequence = new GenerationSequence(_model, _backend, request, onToken, cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();
        sequence.PrefillChunk(0);
        while (!sequence.Finished)
        {
            cancellationToken.ThrowIfCancellationRequested();
            sequence.DecodeAlone();
        }
        return sequence.Result();
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
}
