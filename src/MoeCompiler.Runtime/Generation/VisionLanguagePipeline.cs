using System.Diagnostics;
using MoeCompiler.Imaging;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tokenizers;

namespace MoeCompiler.Runtime.Generation;

/// <summary>What to ask besides the images and the question.</summary>
public sealed record AskOptions
{
    public GenerationOptions Generation { get; init; } = new();
    /// <summary>Earlier turns (the first carries the image placeholder, as in the reference CLI).</summary>
    public IReadOnlyList<(string User, string Assistant)> History { get; init; } = [];
    /// <summary>Null: the template's default system prompt.</summary>
    public string? System { get; init; }
    /// <summary>Record every MoE routing decision (statistics are always collected).</summary>
    public bool KeepRoutingRecords { get; init; }
}

/// <summary>An answer with everything measured on the way.</summary>
public sealed record VisionLanguageAnswer
{
    public required string Text { get; init; }
    public required int[] TokenIds { get; init; }
    public required StopReason StopReason { get; init; }
    /// <summary>The templated prompt text (with &lt;image&gt; placeholders) and its ids (−200 at each).</summary>
    public required string Prompt { get; init; }
    public required int[] PromptIds { get; init; }
    /// <summary>Decoding and preprocessing of the image files.</summary>
    public required TimeSpan ImagePreprocessing { get; init; }
    public required GenerationTimings Timings { get; init; }
    /// <summary>Per MoE layer, the share of tokens each expert received, split by text and image tokens.</summary>
    public required RoutingStatistics Routing { get; init; }
    /// <summary>Only with <see cref="AskOptions.KeepRoutingRecords"/>.</summary>
    public IReadOnlyList<RoutingRecord> RoutingRecords { get; init; } = [];
}

/// <summary>
/// The whole way from image files and a question to a streamed answer: prompt template, tokenisation with image
/// placeholders, the tower's preprocessing, splicing, generation with the template's stop strings and the model's
/// EOS ids, and routing statistics. A text-only variant chats without images; giving it one is a
/// <see cref="ModelInputException"/>.
/// </summary>
public sealed class VisionLanguagePipeline
{
    private readonly ILanguageModel _model;
    private readonly IBackend _backend;
    private readonly ITokenizer _tokenizer;
    private readonly TextGenerator _generator;
    private readonly VisionPreprocessing? _preprocessing;

    /// <param name="tokenizer">Null: the tokenizer shipped for the model's kind (<see cref="CheckpointTokenizer.Bundled"/>).
    /// To use a checkpoint folder's own tokenizer files, pass <see cref="CheckpointTokenizer.Load"/>'s tokenizer.</param>
    public VisionLanguagePipeline(ILanguageModel model, IBackend backend, ITokenizer? tokenizer = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(backend);
        _model = model;
        _backend = backend;
        var d = model.Description;
        _tokenizer = tokenizer ?? CheckpointTokenizer.Bundled(d).Tokenizer;
        _generator = new TextGenerator(model, backend);
        _preprocessing = d.VisionTower is "clip" or "siglip" ? new VisionPreprocessing(d.VisionTower, d.ImageSize, d.ImageMean, d.ImageStd) : null;
    }

    public ITokenizer Tokenizer => _tokenizer;
    public ILanguageModel Model => _model;

    /// <summary>OpenChat's end-of-turn token lives in its own tokenizer kind, though the spec says sentencepiece.</summary>
    public static string TokenizerKindFor(ModelDescription description) =>
        description.PromptTemplate == "openchat" && description.TokenizerKind == "sentencepiece" ? "openchat" : description.TokenizerKind;

    /// <summary>The prompt text for <paramref name="images"/> images: the first user turn gets one placeholder per image.</summary>
    public string BuildPrompt(int images, string question, AskOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(question);
        options ??= new AskOptions();
        if (images > 1) question = string.Concat(Enumerable.Repeat(PromptTemplates.ImagePlaceholder + "\n", images - 1)) + question;
        return PromptTemplates.Build(_model.Description.PromptTemplate, options.History, question, options.System, withImage: images > 0);
    }

    /// <summary>Prompt ids with −200 at each placeholder and at most one leading BOS.</summary>
    public int[] TokenizePrompt(string prompt)
    {
        var d = _model.Description;
        // A text-only variant has no image placeholder: "<image>" typed into a question is just text to it.
        int[] ids;
        if (d.HasVision)
        {
            ids = ImagePromptTokenizer.Tokenize(_tokenizer, prompt, addBos: d.BosId is not null);
        }
        else
        {
            int[] text = _tokenizer.Encode(prompt);
            ids = d.BosId is not null && _tokenizer.BosId is int bosId ? [bosId, .. text] : text;
        }
        // A template that spells out the BOS ("<s>[INST] ...") must not end up with two.
        if (ids.Length >= 2 && d.BosId is int bos && ids[0] == bos && ids[1] == bos) ids = ids[1..];
        foreach (int id in ids)
            if (id != PromptSplicer.ImageTokenId && (id < 0 || id >= d.VocabSize))
                throw new ModelInputException($"the {d.TokenizerKind} tokenizer produced id {id}, outside {d.Name}'s vocabulary of {d.VocabSize} ids: " +
                    "this variant's embedding table is smaller than its tokenizer (a test-size spec?); give it the tokenizer's vocabulary size");
        int images = ids.Count(id => id == PromptSplicer.ImageTokenId);
        long positions = ids.Length + (long)images * (d.ImageTokens - 1);
        if (positions > d.MaxPositions)
            throw new ModelInputException($"the prompt needs {positions} positions ({ids.Length - images} text tokens, {images} image(s) of {d.ImageTokens} rows); " +
                $"{d.Name} handles at most {d.MaxPositions}");
        return ids;
    }

    /// <summary>Decodes and preprocesses one image file to pixels [3, S, S] on the backend.</summary>
    public Tensor LoadImage(string path)
    {
        if (_preprocessing is null) throw new ModelInputException(PromptSplicer.TextOnlyMessage(_model.Description));
        return Upload(_preprocessing.Apply(ImageDecoder.DecodeFile(path)));
    }

    /// <summary>Answers <paramref name="question"/> about the images; <paramref name="onText"/> receives the answer
    /// as it is generated. Runs on a worker thread; cancellation throws <see cref="OperationCanceledException"/>.</summary>
    public Task<VisionLanguageAnswer> AskAsync(IReadOnlyList<string> imagePaths, string question, AskOptions? options = null,
        Action<string>? onText = null, CancellationToken cancellationToken = default)
        => Task.Run(() => Ask(imagePaths, question, options, onText, cancellationToken), cancellationToken);

    public Task<VisionLanguageAnswer> AskAsync(string imagePath, string question, AskOptions? options = null,
        Action<string>? onText = null, CancellationToken cancellationToken = default)
        => AskAsync([imagePath], question, options, onText, cancellationToken);

    /// <summary>As <see cref="AskAsync(IReadOnlyList{string}, string, AskOptions?, Action{string}?, CancellationToken)"/>, on the calling thread.</summary>
    public VisionLanguageAnswer Ask(IReadOnlyList<string> imagePaths, string question, AskOptions? options = null,
        Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(imagePaths);
        options ??= new AskOptions();
        var d = _model.Description;
        if (imagePaths.Count > 0 && !d.HasVision) throw new ModelInputException(PromptSplicer.TextOnlyMessage(d));

        long t0 = Stopwatch.GetTimestamp();
        var images = new List<Tensor>(imagePaths.Count);
        foreach (string path in imagePaths)
        {
            cancellationToken.ThrowIfCancellationRequested();
            images.Add(LoadImage(path));
        }
        var preprocessing = Stopwatch.GetElapsedTime(t0);

        var prepared = Prepare(images, question, options);
        var result = _generator.Generate(prepared.Request,
            onText is null ? null : token => { if (token.Text.Length > 0) onText(token.Text); }, cancellationToken);
        return prepared.Answer(result, preprocessing);
    }

    /// <summary>
    /// Everything <see cref="Ask(IReadOnlyList{string}, string, AskOptions?, Action{string}?, CancellationToken)"/>
    /// does before generating, for callers that run the generation themselves (a server's scheduler): the template
    /// with one placeholder per image, the prompt ids, the template's stop strings and the model's EOS ids added to
    /// the options, a streaming text decoder and a routing recorder. Each call makes a new request: the decoder and
    /// the recorder belong to it alone.
    /// </summary>
    /// <param name="images">Pixels from <see cref="LoadImage(string)"/> or <see cref="LoadImage(ReadOnlySpan{byte}, ImageDecodeOptions?)"/>.</param>
    public PreparedGeneration Prepare(IReadOnlyList<Tensor> images, string question, AskOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(question);
        options ??= new AskOptions();
        var d = _model.Description;
        if (images.Count > 0 && !d.HasVision) throw new ModelInputException(PromptSplicer.TextOnlyMessage(d));
        options.Generation.Validate();

        string prompt = BuildPrompt(images.Count, question, options);
        int[] ids = TokenizePrompt(prompt);

        var generation = options.Generation;
        var stopStrings = PromptTemplates.StopStrings(d.PromptTemplate).Concat(generation.StopStrings).Distinct().ToList();
        var stopIds = new HashSet<int>(generation.StopTokenIds);
        if (generation.StopOnEos) stopIds.UnionWith(_tokenizer.EosIds);
        // Special-token separators never show up in text decoded with skipSpecial: stop on their ids instead.
        foreach (string s in stopStrings)
            if (_tokenizer.Encode(s, allowSpecial: true) is [int single] && _tokenizer.IsSpecial(single))
                stopIds.Add(single);
        generation = generation with { StopStrings = stopStrings, StopTokenIds = stopIds.Order().ToArray() };

        var recorder = new RoutingRecorder();
        var decoder = new TokenizerTextDecoder(_tokenizer.CreateStreamingDecoder(skipSpecial: true));
        var request = new GenerationRequest
        {
            PromptIds = ids,
            Images = images,
            Options = generation,
            Decoder = decoder,
            ConfigureContext = context =>
            {
                context.Routing = recorder;
                // Only variants whose spec samples the second expert (DeepSpeed-compatible mode) draw from it.
                context.Random = new Random(unchecked((int)generation.Sampling.Seed));
            },
        };
        return new PreparedGeneration(request, prompt, ids, recorder, options.KeepRoutingRecords);
    }

    /// <summary>Decodes encoded image bytes (PNG, JPEG, BMP, PNM) and preprocesses them to pixels [3, S, S] on the backend.</summary>
    /// <param name="options">Decoding limits (e.g. a server's pixel limit); null: the decoder's defaults.</param>
    public Tensor LoadImage(ReadOnlySpan<byte> encoded, ImageDecodeOptions? options = null)
    {
        if (_preprocessing is null) throw new ModelInputException(PromptSplicer.TextOnlyMessage(_model.Description));
        return Upload(_preprocessing.Apply(ImageDecoder.Decode(encoded, options)));
    }

    private Tensor Upload(float[] chw)
    {
        var pixels = _backend.Allocate(DType.F32, 3, _preprocessing!.ImageSize, _preprocessing.ImageSize);
        _backend.Upload(chw, pixels);
        return pixels;
    }

    private sealed class TokenizerTextDecoder(StreamingDecoder decoder) : ITokenTextDecoder
    {
        public string Push(int id) => decoder.Push(id);
        public string Flush() => decoder.Flush();
    }
}

/// <summary>
/// A generation request built by <see cref="VisionLanguagePipeline.Prepare"/>, with what turns its result into a
/// <see cref="VisionLanguageAnswer"/>: the templated prompt, its ids and the routing recorder the request fills.
/// </summary>
public sealed class PreparedGeneration
{
    private readonly RoutingRecorder _routing;
    private readonly bool _keepRecords;

    internal PreparedGeneration(GenerationRequest request, string prompt, int[] promptIds, RoutingRecorder routing, bool keepRecords)
    {
        Request = request;
        Prompt = prompt;
        PromptIds = promptIds;
        _routing = routing;
        _keepRecords = keepRecords;
    }

    public GenerationRequest Request { get; }
    public string Prompt { get; }
    public int[] PromptIds { get; }

    /// <summary>Per MoE layer, the share of tokens each expert received so far in this request.</summary>
    public RoutingStatistics Routing() => _routing.Statistics();

    public VisionLanguageAnswer Answer(GenerationResult result, TimeSpan imagePreprocessing = default)
    {
        ArgumentNullException.ThrowIfNull(result);
        return new VisionLanguageAnswer
        {
            Text = result.Text,
            TokenIds = result.TokenIds,
            StopReason = result.StopReason,
            Prompt = Prompt,
            PromptIds = PromptIds,
            ImagePreprocessing = imagePreprocessing,
            Timings = result.Timings,
            Routing = _routing.Statistics(),
            RoutingRecords = _keepRecords ? _routing.Records : [],
        };
    }
}
