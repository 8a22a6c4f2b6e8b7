using MoeCompiler.Runtime.Generation;

namespace MoeCompiler.Serving;

/// <summary>
/// All model access of the serving code goes through this one interface: the chat client hands it prepared
/// requests. Its signature is that of the batched-decode scheduler (issue 19, items 1–2:
/// <c>GenerationScheduler.GenerateAsync</c>), so plugging the scheduler in is a change to <see cref="GenerationBackends.For"/>.
/// Implementations are thread-safe; one that is full throws <see cref="GenerationBackendFullException"/>.
/// </summary>
internal interface IGenerationBackend : IDisposable
{
    Task<GenerationResult> GenerateAsync(GenerationRequest request, Action<GeneratedToken>? onToken = null, CancellationToken ct = default);
}

/// <summary>The backend's queue is full: the server answers 503 and the client may retry.</summary>
public sealed class GenerationBackendFullException(string message) : Exception(message);

internal static class GenerationBackends
{
    /// <summary>
    /// THE place the scheduler plugs in. Until <c>GenerationScheduler</c> is merged, generations run one at a time
    /// over the shared model (<see cref="SerializedGenerationBackend"/>). With it:
    /// <c>return new SchedulerBackend(new GenerationScheduler(model));</c> where SchedulerBackend forwards
    /// GenerateAsync and maps <c>SchedulerFullException</c> to <see cref="GenerationBackendFullException"/>.
    /// </summary>
    public static IGenerationBackend For(LoadedModel model) => new SerializedGenerationBackend(model);
}

/// <summary>
/// STAND-IN until the batched scheduler lands: a <see cref="LoadedModel"/> serves one generation at a time
/// (docs/api.md, Threads), so calls wait their turn on a semaphore and run one after another on a worker thread.
/// A call cancelled while it waits never runs; one cancelled while it runs stops at the next token.
/// </summary>
internal sealed class SerializedGenerationBackend(LoadedModel model) : IGenerationBackend
{
    private readonly SemaphoreSlim _turn = new(1, 1);

    public async Task<GenerationResult> GenerateAsync(GenerationRequest request, Action<GeneratedToken>? onToken = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        await _turn.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            return await Task.Run(() => model.Generate(request, onToken, ct), ct).ConfigureAwait(false);
        }
        finally
        {
            _turn.Release();
        }
    }

    public void Dispose() => _turn.Dispose();
}
