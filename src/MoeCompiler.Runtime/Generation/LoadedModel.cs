using System.Diagnostics;
using System.Text.Json;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tokenizers;

namespace MoeCompiler.Runtime.Generation;

/// <summary>How <see cref="LoadedModel.Open"/> finds and binds the weights.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>Where the model runs; null: the shared CPU backend. A backend given here is not disposed with the model.</summary>
    public IBackend? Backend { get; init; }
    /// <summary>Convert every weight to this dtype once at load; null: as stored.</summary>
    public DType? WeightDType { get; init; }
    /// <summary>Branch, tag or commit of a repository id looked up in the hub cache; null: main.</summary>
    public string? Revision { get; init; }
    /// <summary>
    /// The vision tower's own checkpoint (a folder, a file, or a repository id ORG/NAME in the hub cache), used
    /// instead of any copy inside the model checkpoint. Null: the checkpoint's copy, or, when it has none, the tower
    /// that config.json names (<c>mm_image_tower</c> / <c>mm_vision_tower</c>) or the reference's tower for this
    /// variant's kind, found in the hub cache.
    /// </summary>
    public string? VisionTower { get; init; }
    /// <summary>The tokenizer to use; null: the checkpoint folder's tokenizer files if it has them (checked against
    /// the variant, see <see cref="CheckpointTokenizer.Load"/>), else the bundled ones.</summary>
    public ITokenizer? Tokenizer { get; init; }
    public IProgress<BindProgress>? Progress { get; init; }
    /// <summary>Environment variables for the hub-cache look-up (tests); null: the process environment.</summary>
    public Func<string, string?>? Environment { get; init; }
}

/// <summary>Logits for every position of one forward pass over a prompt, with the routing decisions it took.</summary>
public sealed record ForwardResult(float[] Logits, int Rows, int VocabSize, bool[] IsImageToken, IReadOnlyList<RoutingRecord> Routing)
{
    /// <summary>The logits of position <paramref name="row"/> of the spliced sequence (images expanded).</summary>
    public ReadOnlySpan<float> Row(int row)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, Rows);
        return Logits.AsSpan(row * VocabSize, VocabSize);
    }
}

/// <summary>
/// A compiled variant bound to its weights, ready to use: what an application needs in one object. Open it from a
/// checkpoint folder or a hub-cache repository id; then <see cref="Ask"/> about images, or go one level down with
/// <see cref="Forward"/> (logits and routing for given ids and pixels) and <see cref="Generate"/> (ids in, ids out).
/// Not thread-safe: one caller at a time. Dispose it to release the weights.
/// </summary>
public sealed class LoadedModel : IDisposable
{
    private bool _disposed;

    private LoadedModel(ILanguageModel model, IBackend backend, ITokenizer tokenizer, string tokenizerSource, string checkpoint,
        string? visionTower, TimeSpan loadTime, int weightBytes)
    {
        Model = model;
        Backend = backend;
        Pipeline = new VisionLanguagePipeline(model, backend, tokenizer);
        TokenizerSource = tokenizerSource;
        CheckpointPath = checkpoint;
        VisionTowerSource = visionTower;
        LoadTime = loadTime;
        WeightBytes = weightBytes;
    }

    /// <summary>The generated variant; an <see cref="IVisionLanguageModel"/> unless the variant is text-only.</summary>
    public ILanguageModel Model { get; }
    public ModelDescription Description => Model.Description;
    public IBackend Backend { get; }
    /// <summary>Prompt template, tokenizer, image preprocessing and generation as the reference chat does them.</summary>
    public VisionLanguagePipeline Pipeline { get; }
    public ITokenizer Tokenizer => Pipeline.Tokenizer;
    /// <summary>Where the tokenizer came from, for reports: a file of the checkpoint folder, "bundled KIND", or "given".</summary>
    public string TokenizerSource { get; }
    /// <summary>The checkpoint folder or file the weights were bound from (a hub-cache snapshot folder for a repository id).</summary>
    public string CheckpointPath { get; }
    /// <summary>Where the vision tower's weights came from: the model checkpoint or a separate tower; null without a tower.</summary>
    public string? VisionTowerSource { get; }
    public TimeSpan LoadTime { get; }
    /// <summary>Bytes per weight element as bound (the checkpoint's dtype unless converted at load).</summary>
    public int WeightBytes { get; }

    /// <summary>The reference's tower checkpoint for a tower kind and image size (MoE-LLaVA's CLIP-336 and SigLIP-384).</summary>
    public static string? DefaultVisionTowerRepo(ModelDescription description) => (description.VisionTower, description.ImageSize) switch
    {
        ("clip", 336) => "openai/clip-vit-large-patch14-336",
        ("siglip", 384) => "google/siglip-so400m-patch14-384",
        _ => null,
    };

    /// <summary>
    /// Binds <paramref name="weights"/> (a folder, a file, or a repository id ORG/NAME found offline in the Hugging Face
    /// hub cache) to a compiled variant. Checks config.json (when present) against the variant and every tensor against
    /// the manifest before reading data; a problem is a <see cref="CheckpointException"/> naming the file.
    /// </summary>
    /// <param name="load">The variant's generated <c>Load</c> (also <c>ModelCatalogEntry.Load</c>).</param>
    public static LoadedModel Open(ModelDescription description, WeightManifest manifest,
        Func<string, IBackend, BindOptions?, ILanguageModel> load, string weights, ModelLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(description);
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(load);
        ArgumentNullException.ThrowIfNull(weights);
        options ??= new ModelLoadOptions();
        string folder = HubCache.Resolve(weights, options.Revision, options.Environment);
        if (Directory.Exists(folder)) HuggingFaceConfig.EnsureMatches(folder, description);
        // The tokenizer is checked before any weight is read: a mismatch is found in milliseconds, not after a bind.
        var (tokenizer, tokenizerSource) = options.Tokenizer is { } given
            ? (given, "given")
            : CheckpointTokenizer.Load(Directory.Exists(folder) ? folder : null, description) is var found ? (found.Tokenizer, found.Source) : default;

        string? tower = ChooseVisionTower(description, manifest, folder, options);
        var backend = options.Backend ?? CpuBackend.Shared;
        long start = Stopwatch.GetTimestamp();
        var model = load(folder, backend, new BindOptions { TargetDType = options.WeightDType, Progress = options.Progress, VisionTowerPath = tower });
        try
        {
            int weightBytes = options.WeightDType is DType asked ? ReportedBytes(asked) : ProbeWeightBytes(manifest, folder);
            string? towerSource = description.VisionTower is "clip" or "siglip" ? tower ?? folder : null;
            return new LoadedModel(model, backend, tokenizer, tokenizerSource, folder, towerSource, Stopwatch.GetElapsedTime(start), weightBytes);
        }
        catch
        {
            (model as IDisposable)?.Dispose();
            throw;
        }
    }

    /// <summary>The separate tower to bind, if any: the one asked for, or, for a checkpoint without a tower, the one
    /// config.json names or the reference's default, when the hub cache has it.</summary>
    private static string? ChooseVisionTower(ModelDescription description, WeightManifest manifest, string folder, ModelLoadOptions options)
    {
        if (options.VisionTower is { } asked) return HubCache.Resolve(asked, null, options.Environment);
        if (WeightBinder.VisionKeyPrefix(manifest).Length == 0) return null;
        using (var checkpoint = CheckpointFolder.Open(folder))
            if (!WeightBinder.LacksVisionTower(manifest, checkpoint)) return null;

        var candidates = new List<string>();
        if (ConfiguredTower(folder) is { } configured) candidates.Add(configured);
        if (DefaultVisionTowerRepo(description) is { } fallback && !candidates.Contains(fallback)) candidates.Add(fallback);
        foreach (string candidate in candidates)
        {
            if (Path.IsPathRooted(candidate) && Directory.Exists(candidate)) return candidate;
            if (HubCache.TryFindSnapshot(candidate, "main", options.Environment) is { } snapshot) return snapshot;
        }
        var (cache, _) = HubCache.CacheFolder(options.Environment);
        throw new CheckpointException(folder,
            $"has no vision tower weights, and {(candidates.Count == 0 ? "no tower is known for this variant" : $"{string.Join(" / ", candidates)} is not in the hub cache ({cache})")}: " +
            "give the tower's own checkpoint (a folder or ORG/NAME) with --vision-tower or ModelLoadOptions.VisionTower");
    }

    /// <summary>The tower config.json names (MoE-LLaVA: mm_image_tower; LLaVA, CuMo: mm_vision_tower), if any.</summary>
    private static string? ConfiguredTower(string folder)
    {
        string config = Path.Combine(folder, "config.json");
        if (!MoeCompiler.IO.RegularFile.TryResolve(config, out string resolved, out _) || new FileInfo(resolved).Length > 1 << 22) return null;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(resolved));
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return null;
            foreach (string key in (ReadOnlySpan<string>)["mm_image_tower", "mm_vision_tower", "image_tower", "vision_tower"])
                if (doc.RootElement.TryGetProperty(key, out var value) && value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } name)
                    return name;
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            // config.json was already checked against the variant; a tower name is only a hint.
        }
        return null;
    }

    private static int ProbeWeightBytes(WeightManifest manifest, string weights)
    {
        using var folder = CheckpointFolder.Open(weights);
        foreach (var entry in manifest.Entries)
            if (entry.Shape.Length == 2 && folder.TryGetInfo(entry.Key, out var info) && info.DType is DType d)
                return ReportedBytes(d);
        return 4;
    }

    /// <summary>Bytes per weight element for reports; q4 packs two values a byte and counts as 1.</summary>
    private static int ReportedBytes(DType dtype) => dtype == DType.Q4 ? 1 : dtype.SizeInBytes();

    /// <summary>Answers a question about image files (see <see cref="VisionLanguagePipeline.Ask(IReadOnlyList{string}, string, AskOptions?, Action{string}?, CancellationToken)"/>).</summary>
    public VisionLanguageAnswer Ask(IReadOnlyList<string> imagePaths, string question, AskOptions? options = null,
        Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Pipeline.Ask(imagePaths, question, options, onText, cancellationToken);
    }

    public Task<VisionLanguageAnswer> AskAsync(IReadOnlyList<string> imagePaths, string question, AskOptions? options = null,
        Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Pipeline.AskAsync(imagePaths, question, options, onText, cancellationToken);
    }

    /// <summary>Decodes and preprocesses an image file to pixels [3, S, S] on this model's backend.</summary>
    public Tensor LoadImage(string path) => Pipeline.LoadImage(path);

    /// <summary>Uploads preprocessed pixels (channel-major, [3, S, S], as the tower's preprocessing makes them).</summary>
    public Tensor UploadPixels(ReadOnlySpan<float> chw)
    {
        if (!Description.HasVision) throw new ModelInputException(PromptSplicer.TextOnlyMessage(Description));
        int size = Description.ImageSize;
        if (chw.Length != 3 * size * size)
            throw new ModelInputException($"{Description.Name} takes pixels [3, {size}, {size}] ({3 * size * size} values), not {chw.Length} values");
        var pixels = Backend.Allocate(DType.F32, 3, size, size);
        Backend.Upload(chw, pixels);
        return pixels;
    }

    /// <summary>
    /// One forward pass over <paramref name="ids"/> (−200 where an image goes, one per entry of <paramref name="images"/>):
    /// the logits of every position of the spliced sequence and every routing decision, in a fresh KV cache sized for it.
    /// </summary>
    /// <param name="kvCacheDType">Null: the backend's default for the weights (see <see cref="IBackend.KvCacheDType"/>).</param>
    public ForwardResult Forward(IReadOnlyList<int> ids, IReadOnlyList<Tensor>? images = null, DType? kvCacheDType = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(ids);
        images ??= [];
        var d = Description;
        var recorder = new RoutingRecorder();
        recorder.BeginCall();
        var visionContext = new ForwardContext(Backend) { Routing = recorder };
        var textContext = new ForwardContext(Backend) { Routing = recorder };
        SplicedSequence spliced;
        try
        {
            spliced = PromptSplicer.Splice(Model, visionContext, textContext, ids, images);
        }
        catch (ArgumentException e)
        {
            throw new ModelInputException($"{d.Name}: {e.Message}");
        }
        if (spliced.Length > d.MaxPositions)
            throw new ModelInputException($"the sequence needs {spliced.Length} positions; {d.Name} handles at most {d.MaxPositions}");
        var cache = new KvCache(Backend, d.Layers, spliced.Length, d.KvHeads * d.HeadDim, kvCacheDType ?? Backend.KvCacheDType(Model.LlmWeightDType));
        var context = new ForwardContext(Backend, cache) { IsImageToken = spliced.IsImageToken, Routing = recorder };
        var logits = Model.Forward(context, spliced.Embeddings);
        float[] values = logits.ToFloatArray();
        return new ForwardResult(values, spliced.Length, values.Length / spliced.Length, spliced.IsImageToken, recorder.Records.ToArray());
    }

    /// <summary>Generates from prompt ids and pixels (see <see cref="TextGenerator.Generate"/>): no template, no tokenizer.</summary>
    public GenerationResult Generate(GenerationRequest request, Action<GeneratedToken>? onToken = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new TextGenerator(Model, Backend).Generate(request, onToken, cancellationToken);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        (Model as IDisposable)?.Dispose();
    }
}
