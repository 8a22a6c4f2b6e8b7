using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MoeCompiler.Imaging;
using MoeCompiler.Runtime.Generation;

namespace MoeCompiler.Serving;

/// <summary>Where <see cref="MoeServer"/> listens and what it admits.</summary>
public sealed record MoeServerOptions
{
    /// <summary>Loopback by default: the server has no authentication.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0: any free port (see <see cref="MoeServer.Address"/>).</summary>
    public int Port { get; init; } = 8080;
    /// <summary>Larger request bodies are answered 413 (images arrive base64-encoded in the body).</summary>
    public long MaxRequestBodyBytes { get; init; } = 32L << 20;
    /// <summary>Requests admitted at once (generating, or waiting for the model).</summary>
    public int MaxConcurrentRequests { get; init; } = 4;
    /// <summary>Requests waiting for admission beyond those; more are answered 429.</summary>
    public int MaxQueuedRequests { get; init; } = 16;
    /// <summary>Called with one line per finished request (the CLI prints them); null: quiet.</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>
/// The OpenAI-compatible HTTP server of <c>moe serve</c>, built on a <see cref="MoeChatClient"/>:
/// <c>GET /v1/models</c>, <c>POST /v1/chat/completions</c> (JSON or server-sent events), <c>GET /health</c>, and the
/// chat page at <c>/</c>. docs/serving.md describes the protocol, the limits and the extension fields.
/// </summary>
public sealed class MoeServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly MoeChatClient _client;
    private readonly MoeServerOptions _options;
    private readonly SemaphoreSlim _slots;
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private int _inSystem;
    private int _active;
    private long _served, _cancelled, _failed, _rejected;

    private MoeServer(WebApplication app, MoeChatClient client, MoeServerOptions options)
    {
        _app = app;
        _client = client;
        _options = options;
        _slots = new SemaphoreSlim(options.MaxConcurrentRequests, options.MaxConcurrentRequests);
    }

    /// <summary>The address it listens on, once started (with the real port when <see cref="MoeServerOptions.Port"/> is 0).</summary>
    public Uri Address { get; private set; } = new("http://127.0.0.1/");

    public static MoeServer Create(MoeChatClient client, MoeServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        options ??= new MoeServerOptions();
        if (options.MaxConcurrentRequests < 1) throw new ArgumentException("at least one concurrent request", nameof(options));
        if (options.MaxQueuedRequests < 0) throw new ArgumentException("the queue length must be ≥ 0", nameof(options));
        if (options.Port is < 0 or > 65535) throw new ArgumentException($"port {options.Port} is outside 0–65535", nameof(options));
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            kestrel.AddServerHeader = false;
            if (options.Host is "localhost") kestrel.ListenLocalhost(options.Port);
            else if (IPAddress.TryParse(options.Host, out var ip)) kestrel.Listen(ip, options.Port);
            else throw new ArgumentException($"host '{options.Host}' is not an IP address (or localhost)", nameof(options));
        });
        var app = builder.Build();
        var server = new MoeServer(app, client, options);
        server.Map(app);
        return server;
    }

    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        await _app.StartAsync(cancellationToken).ConfigureAwait(false);
        var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        Address = new Uri(addresses.First().Replace("[::]", "localhost", StringComparison.Ordinal) + "/");
    }

    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _app.DisposeAsync().ConfigureAwait(false);
        _slots.Dispose();
    }

    private void Map(WebApplication app)
    {
        app.MapGet("/", async context =>
        {
            context.Response.ContentType = "text/html; charset=utf-8";
            context.Response.Headers.CacheControl = "no-cache";
            using var page = typeof(MoeServer).Assembly.GetManifestResourceStream("MoeCompiler.Serving.wwwroot.index.html")!;
            await page.CopyToAsync(context.Response.Body, context.RequestAborted);
        });
        app.MapGet("/health", context => WriteJson(context, 200, json =>
        {
            json.WriteStartObject();
            json.WriteString("status", "ok");
            json.WriteString("model", _client.ModelId);
            json.WriteBoolean("vision", _client.Model.Description.HasVision);
            json.WriteNumber("active", Volatile.Read(ref _active));
            json.WriteNumber("waiting", Math.Max(0, Volatile.Read(ref _inSystem) - Volatile.Read(ref _active)));
            json.WriteNumber("served", Interlocked.Read(ref _served));
            json.WriteNumber("cancelled", Interlocked.Read(ref _cancelled));
            json.WriteNumber("failed", Interlocked.Read(ref _failed));
            json.WriteNumber("rejected", Interlocked.Read(ref _rejected));
            json.WriteEndObject();
        }));
        app.MapGet("/v1/models", context => WriteJson(context, 200, json =>
        {
            json.WriteStartObject();
            json.WriteString("object", "list");
            json.WriteStartArray("data");
            WriteModel(json);
            json.WriteEndArray();
            json.WriteEndObject();
        }));
        app.MapGet("/v1/models/{id}", (HttpContext context, string id) => id == _client.ModelId
            ? WriteJson(context, 200, WriteModel)
            : WriteError(context, new OpenAiError(404, $"The model '{id}' does not exist", code: "model_not_found")));
        app.MapPost("/v1/chat/completions", ChatCompletions);
        app.MapFallback(context => WriteError(context, new OpenAiError(404, $"no route {context.Request.Method} {context.Request.Path}", code: "not_found")));
    }

    private void WriteModel(Utf8JsonWriter json)
    {
        json.WriteStartObject();
        json.WriteString("id", _client.ModelId);
        json.WriteString("object", "model");
        json.WriteNumber("created", _created);
        json.WriteString("owned_by", "moecompiler");
        json.WriteEndObject();
    }

    private async Task ChatCompletions(HttpContext context)
    {
        var aborted = context.RequestAborted;
        ChatCompletionRequest request;
        try
        {
            request = await ReadRequest(context);
        }
        catch (OpenAiError e)
        {
            await WriteError(context, e);
            return;
        }

        // Admission: at most MaxConcurrentRequests in, MaxQueuedRequests waiting; beyond that 429 at once.
        if (Interlocked.Increment(ref _inSystem) > _options.MaxConcurrentRequests + _options.MaxQueuedRequests)
        {
            Interlocked.Decrement(ref _inSystem);
            Interlocked.Increment(ref _rejected);
            context.Response.Headers.RetryAfter = "1";
            await WriteError(context, new OpenAiError(429, "too many requests: the server's queue is full; retry later", "rate_limit_exceeded", code: "queue_full"));
            return;
        }
        bool admitted = false;
        try
        {
            await _slots.WaitAsync(aborted);
            admitted = true;
            Interlocked.Increment(ref _active);
            if (request.Stream) await Stream(context, request, aborted);
            else await Complete(context, request, aborted);
            Interlocked.Increment(ref _served);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The client went away: its generation stopped; there is nobody to answer.
            Interlocked.Increment(ref _cancelled);
        }
        catch (Exception e) when (Describe(e) is { } error)
        {
            if (error.Status >= 500) Interlocked.Increment(ref _failed);
            if (!context.Response.HasStarted) await WriteError(context, error);
            else await WriteEvent(context, error.Write, CancellationToken.None);
        }
        finally
        {
            if (admitted)
            {
                Interlocked.Decrement(ref _active);
                _slots.Release();
            }
            Interlocked.Decrement(ref _inSystem);
        }
    }

    private async Task<ChatCompletionRequest> ReadRequest(HttpContext context)
    {
        if (context.Request.ContentLength > _options.MaxRequestBodyBytes) throw TooLarge();
        JsonDocument body;
        try
        {
            body = await JsonDocument.ParseAsync(context.Request.Body, new JsonDocumentOptions { MaxDepth = 16 }, context.RequestAborted);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw TooLarge();
        }
        catch (JsonException e)
        {
            throw OpenAiError.BadRequest($"the request body is not valid JSON: {e.Message}");
        }
        using (body)
            return ChatCompletionRequest.Parse(body.RootElement, _client.ModelId, _client.Options.AllowLocalFiles);
    }

    private OpenAiError TooLarge() =>
        new(413, $"the request body is larger than this server's limit of {_options.MaxRequestBodyBytes} bytes", code: "request_too_large");

    /// <summary>The OpenAI error for an exception; anything unexpected is a logged 500 with a generic message.</summary>
    private OpenAiError? Describe(Exception e) => e switch
    {
        OpenAiError error => error,
        ModelInputException or ImageDecodingException => OpenAiError.BadRequest(e.Message),
        GenerationBackendFullException => new OpenAiError(503, e.Message, "server_error", code: "overloaded"),
        OperationCanceledException => new OpenAiError(503, "the generation was cancelled (the server is stopping)", "server_error"),
        _ => LogInternal(e),
    };

    private OpenAiError LogInternal(Exception e)
    {
        _options.Log?.Invoke($"internal error: {e}");
        return new OpenAiError(500, "internal server error", "server_error");
    }

    private async Task Complete(HttpContext context, ChatCompletionRequest request, CancellationToken aborted)
    {
        var response = await _client.GetResponseAsync(request.Messages, request.Options, aborted);
        Log(request, response.Usage, response.FinishReason);
        await WriteJson(context, 200, json =>
        {
            json.WriteStartObject();
            json.WriteString("id", response.ResponseId);
            json.WriteString("object", "chat.completion");
            json.WriteNumber("created", (response.CreatedAt ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds());
            json.WriteString("model", _client.ModelId);
            json.WriteStartArray("choices");
            json.WriteStartObject();
            json.WriteNumber("index", 0);
            json.WriteStartObject("message");
            json.WriteString("role", "assistant");
            json.WriteString("content", response.Text);
            json.WriteEndObject();
            json.WriteString("finish_reason", OpenAiWriter.FinishReason(response.FinishReason));
            json.WriteEndObject();
            json.WriteEndArray();
            OpenAiWriter.Usage(json, response.Usage);
            if (request.IncludeRouting) OpenAiWriter.Routing(json, response.AdditionalProperties);
            OpenAiWriter.Timings(json, response.AdditionalProperties);
            json.WriteEndObject();
        });
    }

    private async Task Stream(HttpContext context, ChatCompletionRequest request, CancellationToken aborted)
    {
        await using var updates = _client.GetStreamingResponseAsync(request.Messages, request.Options, aborted).GetAsyncEnumerator(aborted);
        // The first step checks the input: an error there still gets its status code, before any event is sent.
        bool more = await updates.MoveNextAsync();
        context.Response.StatusCode = 200;
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        context.Response.Headers["X-Accel-Buffering"] = "no";
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        bool first = true;
        for (; more; more = await updates.MoveNextAsync())
        {
            var update = updates.Current;
            bool last = update.FinishReason is not null;
            await WriteEvent(context, json =>
            {
                json.WriteStartObject();
                json.WriteString("id", update.ResponseId);
                json.WriteString("object", "chat.completion.chunk");
                json.WriteNumber("created", created);
                json.WriteString("model", _client.ModelId);
                json.WriteStartArray("choices");
                json.WriteStartObject();
                json.WriteNumber("index", 0);
                json.WriteStartObject("delta");
                if (first) json.WriteString("role", "assistant");
                if (!last) json.WriteString("content", update.Text);
                json.WriteEndObject();
                if (last) json.WriteString("finish_reason", OpenAiWriter.FinishReason(update.FinishReason));
                else json.WriteNull("finish_reason");
                json.WriteEndObject();
                json.WriteEndArray();
                if (last)
                {
                    var usage = update.Contents.OfType<UsageContent>().FirstOrDefault()?.Details;
                    OpenAiWriter.Usage(json, usage);
                    if (request.IncludeRouting) OpenAiWriter.Routing(json, update.AdditionalProperties);
                    OpenAiWriter.Timings(json, update.AdditionalProperties);
                    Log(request, usage, update.FinishReason);
                }
                json.WriteEndObject();
            }, aborted);
            first = false;
        }
        await context.Response.WriteAsync("data: [DONE]\n\n", aborted);
        await context.Response.Body.FlushAsync(aborted);
    }

    private void Log(ChatCompletionRequest request, UsageDetails? usage, ChatFinishReason? finish)
    {
        _options.Log?.Invoke($"chat.completions{(request.Stream ? " (stream)" : "")}: {usage?.InputTokenCount} prompt + {usage?.OutputTokenCount} generated tokens, finish {OpenAiWriter.FinishReason(finish)}");
    }

    private static async Task WriteEvent(HttpContext context, Action<Utf8JsonWriter> write, CancellationToken ct)
    {
        var buffer = new MemoryStream();
        buffer.Write("data: "u8);
        using (var json = new Utf8JsonWriter(buffer)) write(json);
        buffer.Write("\n\n"u8);
        await context.Response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), ct);
        await context.Response.Body.FlushAsync(ct);
    }

    private static async Task WriteJson(HttpContext context, int status, Action<Utf8JsonWriter> write)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer)) write(json);
        await context.Response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), context.RequestAborted);
    }

    private static Task WriteError(HttpContext context, OpenAiError error) => WriteJson(context, error.Status, error.Write);
}
