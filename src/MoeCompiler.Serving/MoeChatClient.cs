using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.AI;
using MoeCompiler.Imaging;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Serving;

/// <summary>Limits and defaults of a <see cref="MoeChatClient"/>.</summary>
public sealed record MoeChatClientOptions
{
    /// <summary>The id reported as the model (responses, /v1/models); null: the variant's name.</summary>
    public string? ModelId { get; init; }
    /// <summary>Tokens generated when a request does not say (ChatOptions.MaxOutputTokens).</summary>
    public int DefaultMaxOutputTokens { get; init; } = 256;
    /// <summary>The most tokens a request may ask for; more is a <see cref="ModelInputException"/>.</summary>
    public int MaxOutputTokensLimit { get; init; } = 4096;
    /// <summary>Images declaring more pixels are refused before their pixels are decoded.</summary>
    public long MaxImagePixels { get; init; } = 16L * 1024 * 1024;
    /// <summary>The most images in one conversation.</summary>
    public int MaxImages { get; init; } = 4;
    /// <summary>Accept images given as local file paths (<see cref="UriContent"/> with a file: URI). Off by default:
    /// a server must not read its own files for whoever asks.</summary>
    public bool AllowLocalFiles { get; init; }
}

/// <summary>
/// A compiled variant as a <c>Microsoft.Extensions.AI.IChatClient</c>, in-process: the reference's prompt template
/// and stop strings, images as <see cref="DataContent"/> (image/*), streaming, sampling settings from
/// <see cref="ChatOptions"/> (Temperature, TopP, TopK, Seed, MaxOutputTokens, StopSequences), token usage, and the
/// answer's expert loads (<see cref="RoutingStatistics"/>) under <see cref="RoutingKey"/> in the response's (or the
/// last update's) AdditionalProperties. Thread-safe: concurrent calls share the one model (see
/// <see cref="GenerationBackends.For"/>). The model stays the caller's: disposing the client does not dispose it.
/// </summary>
public sealed class MoeChatClient : IChatClient
{
    /// <summary>AdditionalProperties key of the answer's <see cref="RoutingStatistics"/>.</summary>
    public const string RoutingKey = "routing";
    /// <summary>AdditionalProperties key of the answer's <see cref="GenerationTimings"/>.</summary>
    public const string TimingsKey = "timings";

    private readonly LoadedModel _model;
    private readonly IGenerationBackend _backend;
    private readonly ImageDecodeOptions _decodeOptions;
    private int _disposed;

    public MoeChatClient(LoadedModel model, MoeChatClientOptions? options = null)
        : this(model, GenerationBackends.For(model ?? throw new ArgumentNullException(nameof(model))), options)
    {
    }

    internal MoeChatClient(LoadedModel model, IGenerationBackend backend, MoeChatClientOptions? options)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _backend = backend;
        Options = options ?? new MoeChatClientOptions();
        _decodeOptions = new ImageDecodeOptions { MaxPixels = Options.MaxImagePixels, MaxDegreeOfParallelism = 1 };
        ModelId = Options.ModelId ?? model.Description.Name;
        Metadata = new ChatClientMetadata("MoeCompiler", null, ModelId);
    }

    public MoeChatClientOptions Options { get; }
    public string ModelId { get; }
    public LoadedModel Model => _model;
    public ChatClientMetadata Metadata { get; }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var run = Start(messages, options, onText: null, cancellationToken);
        var answer = await run.ConfigureAwait(false);
        var response = new ChatResponse(new ChatMessage(ChatRole.Assistant, answer.Text))
        {
            ModelId = ModelId,
            ResponseId = NewId(),
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = FinishReason(answer.StopReason),
            Usage = Usage(answer),
            RawRepresentation = answer,
            AdditionalProperties = Extras(answer),
        };
        return response;
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        string id = NewId();
        var pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        // Bad input throws here, before the first update, so callers (the server) can still answer with an error status.
        var run = Start(messages, options, text => pieces.Writer.TryWrite(text), stop.Token);
        _ = run.ContinueWith(_ => pieces.Writer.TryComplete(), TaskScheduler.Default);
        try
        {
            await foreach (string text in pieces.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                // Pieces already buffered are not handed out after cancellation.
                cancellationToken.ThrowIfCancellationRequested();
                yield return new ChatResponseUpdate(ChatRole.Assistant, text) { ResponseId = id, ModelId = ModelId };
            }
        }
        finally
        {
            // A consumer that stops early (a client that went away) ends the generation too.
            stop.Cancel();
        }
        var answer = await run.ConfigureAwait(false);
        yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(answer))])
        {
            ResponseId = id,
            ModelId = ModelId,
            FinishReason = FinishReason(answer.StopReason),
            RawRepresentation = answer,
            AdditionalProperties = Extras(answer),
        };
    }

    /// <summary>Checks and prepares the request synchronously (bad input throws at once), then generates.</summary>
    private Task<VisionLanguageAnswer> Start(IEnumerable<ChatMessage> messages, ChatOptions? options,
        Action<string>? onText, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        ArgumentNullException.ThrowIfNull(messages);
        var conversation = ChatConversation.From(messages, Options);
        var generation = GenerationOptionsFor(options);
        long t0 = Stopwatch.GetTimestamp();
        var images = new List<Tensor>(conversation.Images.Count);
        foreach (var image in conversation.Images) images.Add(LoadImage(image));
        var preprocessing = Stopwatch.GetElapsedTime(t0);
        var prepared = _model.Pipeline.Prepare(images, conversation.Question,
            new AskOptions { Generation = generation, History = conversation.History, System = conversation.System });
        return Generate(prepared, preprocessing, onText, cancellationToken);
    }

    private async Task<VisionLanguageAnswer> Generate(PreparedGeneration prepared, TimeSpan preprocessing, Action<string>? onText, CancellationToken ct)
    {
        var result = await _backend.GenerateAsync(prepared.Request,
            onText is null ? null : token => { if (token.Text.Length > 0) onText(token.Text); }, ct).ConfigureAwait(false);
        return prepared.Answer(result, preprocessing);
    }

    private Tensor LoadImage(ChatImage image)
    {
        if (image.Bytes is { } bytes) return _model.Pipeline.LoadImage(bytes.Span, _decodeOptions);
        string path = image.Path!;
        if (MoeCompiler.IO.RegularFile.Problem(path, ImageDecoder.MaxFileBytes, out _, out _) is { } problem)
            throw new ModelInputException($"image {path}: {problem}");
        return _model.Pipeline.LoadImage(File.ReadAllBytes(path), _decodeOptions);
    }

    private GenerationOptions GenerationOptionsFor(ChatOptions? options)
    {
        int maxTokens = options?.MaxOutputTokens ?? Options.DefaultMaxOutputTokens;
        if (maxTokens < 1 || maxTokens > Options.MaxOutputTokensLimit)
            throw new ModelInputException($"max tokens must be between 1 and {Options.MaxOutputTokensLimit}, got {maxTokens}");
        var sampling = new SamplingOptions
        {
            Temperature = options?.Temperature ?? 0f,
            TopP = options?.TopP ?? 1f,
            TopK = options?.TopK ?? 0,
            Seed = options?.Seed is long seed ? unchecked((ulong)seed) : SamplingOptions.Greedy.Seed,
        };
        var stops = options?.StopSequences ?? [];
        if (stops.Count > 4) throw new ModelInputException($"at most 4 stop sequences, got {stops.Count}");
        var generation = new GenerationOptions { MaxNewTokens = maxTokens, Sampling = sampling, StopStrings = stops.ToArray() };
        try
        {
            generation.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ModelInputException(e.Message);
        }
        return generation;
    }

    private static string NewId() => "chatcmpl-" + Guid.NewGuid().ToString("N");

    private static ChatFinishReason FinishReason(StopReason reason) =>
        reason is StopReason.MaxTokens or StopReason.ContextFull ? ChatFinishReason.Length : ChatFinishReason.Stop;

    private static UsageDetails Usage(VisionLanguageAnswer answer) => new()
    {
        // Prompt tokens as the model saw them: text tokens plus the image feature rows.
        InputTokenCount = answer.Timings.PromptTokens,
        OutputTokenCount = answer.Timings.GeneratedTokens,
        TotalTokenCount = answer.Timings.PromptTokens + answer.Timings.GeneratedTokens,
    };

    private static AdditionalPropertiesDictionary Extras(VisionLanguageAnswer answer) => new()
    {
        [RoutingKey] = answer.Routing,
        [TimingsKey] = answer.Timings,
    };

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType == typeof(LoadedModel)) return _model;
        return null;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _backend.Dispose();
    }
}

/// <summary>An image of a conversation: encoded bytes, or a local file path (only when allowed).</summary>
internal sealed record ChatImage(ReadOnlyMemory<byte>? Bytes, string? Path);

/// <summary>Chat messages in the shape the reference's templates take: a system prompt, (user, assistant) turns,
/// the open question, and the images (which the template puts in the first user turn).</summary>
internal sealed record ChatConversation(string? System, IReadOnlyList<(string User, string Assistant)> History, string Question, IReadOnlyList<ChatImage> Images)
{
    public static ChatConversation From(IEnumerable<ChatMessage> messages, MoeChatClientOptions options)
    {
        string? system = null;
        var turns = new List<(ChatRole Role, string Text)>();
        var images = new List<ChatImage>();
        foreach (var message in messages)
        {
            if (message is null) throw new ModelInputException("a message is null");
            var role = message.Role;
            var text = new List<string>();
            foreach (var content in message.Contents)
            {
                switch (content)
                {
                    case TextContent t:
                        text.Add(t.Text);
                        break;
                    case UsageContent or TextReasoningContent:
                        // what an earlier response carried about itself, not part of the conversation
                        break;
                    case DataContent d when d.HasTopLevelMediaType("image"):
                        if (role != ChatRole.User) throw new ModelInputException($"images go in user messages, not {role.Value} messages");
                        images.Add(new ChatImage(d.Data, null));
                        break;
                    case UriContent u when u.HasTopLevelMediaType("image") && u.Uri.IsFile:
                        if (role != ChatRole.User) throw new ModelInputException($"images go in user messages, not {role.Value} messages");
                        if (!options.AllowLocalFiles) throw new ModelInputException("local image files are not enabled on this server (moe serve --allow-local-files)");
                        images.Add(new ChatImage(null, u.Uri.LocalPath));
                        break;
                    case UriContent u:
                        throw new ModelInputException($"image URL {Shorten(u.Uri.ToString())}: only data: URLs{(options.AllowLocalFiles ? " and local files" : "")} are accepted (nothing is downloaded)");
                    case DataContent d:
                        throw new ModelInputException($"content of type {d.MediaType} is not supported: only text and images");
                    default:
                        throw new ModelInputException($"content {content.GetType().Name} is not supported: only text and images");
                }
            }
            string joined = string.Join("\n", text);
            if (role == ChatRole.System)
            {
                if (turns.Count > 0) throw new ModelInputException("the system message must come first");
                system = system is null ? joined : system + "\n" + joined;
            }
            else if (role == ChatRole.User || role == ChatRole.Assistant)
            {
                // Consecutive messages of one role are one turn to the template.
                if (turns.Count > 0 && turns[^1].Role == role) turns[^1] = (role, turns[^1].Text + "\n" + joined);
                else turns.Add((role, joined));
            }
            else
            {
                throw new ModelInputException($"messages of role '{role.Value}' are not supported: only system, user and assistant");
            }
        }
        if (turns.Count == 0 || turns[^1].Role != ChatRole.User) throw new ModelInputException("the last message must be a user message");
        if (turns[0].Role != ChatRole.User) throw new ModelInputException("the conversation must start with a user message (after an optional system message)");
        if (images.Count > options.MaxImages) throw new ModelInputException($"at most {options.MaxImages} images per conversation, got {images.Count}");
        var history = new List<(string, string)>();
        for (int i = 0; i + 1 < turns.Count; i += 2) history.Add((turns[i].Text, turns[i + 1].Text));
        return new ChatConversation(system, history, turns[^1].Text, images);
    }

    private static string Shorten(string s) => s.Length <= 60 ? s : s[..60] + "…";
}
