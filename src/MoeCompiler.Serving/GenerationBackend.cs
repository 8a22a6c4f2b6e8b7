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
    /// <summary>The backend of a chat client over <paramref name="model"/>: a batched-decode scheduler that steps the
    /// generations of all callers together (docs/api.md, "Serving: GenerationScheduler").</summary>
    public static IGenerationBackend For(LoadedModel model) => new SchedulerBackend(new GenerationScheduler(model));
}

/// <summary>
/// <see cref="GenerationScheduler"/> behind the serving seam: its queue being full becomes
/// <see cref="GenerationBackendFullException"/> (the server's 503). Tokens reach <c>onToken</c> on the scheduler's
/// thread; the chat client only hands them on to a channel.
/// </summary>
internal sealed class SchedulerBackend(GenerationScheduler scheduler) : IGenerationBackend
{
    public async Task<GenerationResult> GenerateAsync(GenerationRequest request, Action<GeneratedToken>? onToken = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        try
        {
            return await scheduler.GenerateAsync(request, onToken, ct).ConfigureAwait(false);
        }
        catch (SchedulerFullException e)
        {
            throw new GenerationBackendFullException(e.Message);
        }
    }

    public void Dispose() => scheduler.Dispose();
}
