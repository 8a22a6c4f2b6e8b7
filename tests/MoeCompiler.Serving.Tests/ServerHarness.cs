using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using MoeCompiler.Runtime.Generation;

namespace MoeCompiler.Serving.Tests;

/// <summary>A <see cref="MoeServer"/> on a free loopback port with an HttpClient pointed at it.</summary>
internal sealed class ServerHarness : IAsyncDisposable
{
    private ServerHarness(MoeServer server, MoeChatClient client)
    {
        Server = server;
        Client = client;
        Http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromMinutes(2) };
    }

    public MoeServer Server { get; }
    public MoeChatClient Client { get; }
    public HttpClient Http { get; }

    public static async Task<ServerHarness> Start(MoeChatClient client, MoeServerOptions? options = null)
    {
        var server = MoeServer.Create(client, (options ?? new MoeServerOptions()) with { Host = "127.0.0.1", Port = 0 });
        await server.StartAsync();
        return new ServerHarness(server, client);
    }

    public static Task<ServerHarness> Start(LoadedModel model, MoeServerOptions? options = null, MoeChatClientOptions? clientOptions = null) =>
        Start(new MoeChatClient(model, clientOptions), options);

    public Task<HttpResponseMessage> Post(string json, string path = "v1/chat/completions") =>
        Http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));

    public static string Body(object request) => JsonSerializer.Serialize(request);

    /// <summary>The data of each server-sent event of a streamed response, [DONE] included.</summary>
    public static async Task<List<string>> Events(HttpResponseMessage response)
    {
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        string text = await response.Content.ReadAsStringAsync();
        var events = new List<string>();
        foreach (string block in text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            Assert.StartsWith("data: ", block);
            events.Add(block["data: ".Length..]);
        }
        return events;
    }

    /// <summary>Checks OpenAI's error shape and returns the error object.</summary>
    public static async Task<JsonElement> Error(HttpResponseMessage response, int status)
    {
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var root = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        var error = root.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.Equal(JsonValueKind.String, error.GetProperty("type").ValueKind);
        Assert.True(error.TryGetProperty("param", out _));
        Assert.True(error.TryGetProperty("code", out _));
        return error;
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Client.Dispose();
    }
}

/// <summary>A backend that takes no model: it streams one token, then waits until released or cancelled, and says
/// which happened. For the admission, queue and disconnect tests, whose subject is the server, not the model.</summary>
internal sealed class GateBackend : IGenerationBackend
{
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public TaskCompletionSource<bool> Cancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _started;
    public int Started => Volatile.Read(ref _started);
    public TaskCompletionSource FirstStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public Exception? Throw { get; init; }

    public void Release() => _release.TrySetResult();

    public async Task<GenerationResult> GenerateAsync(GenerationRequest request, Action<GeneratedToken>? onToken = null, CancellationToken ct = default)
    {
        if (Throw is not null) throw Throw;
        Interlocked.Increment(ref _started);
        onToken?.Invoke(new GeneratedToken(0, 42, "first"));
        FirstStarted.TrySetResult();
        try
        {
            await _release.Task.WaitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            Cancelled.TrySetResult(true);
            throw;
        }
        return new GenerationResult
        {
            TokenIds = [42],
            Text = "first",
            StopReason = StopReason.MaxTokens,
            Timings = new GenerationTimings { PromptTokens = request.PromptIds.Count, GeneratedTokens = 1 },
            SequenceLength = request.PromptIds.Count + 1,
        };
    }

    public void Dispose() => Release();
}
