using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

public sealed class BindOptions
{
    /// <summary>When set to F32, F16 or BF16, every float tensor is converted to this dtype once at load (already
    /// quantised tensors stay as they are). I8 or Q4 means quantise at load with the default
    /// <see cref="QuantizationOptions"/> of that type, unless <see cref="Quantization"/> says otherwise.</summary>
    public DType? TargetDType { get; set; }

    /// <summary>Quantise weights once at load (see <see cref="QuantizationOptions"/>); overrides an I8/Q4 <see cref="TargetDType"/>.</summary>
    public QuantizationOptions? Quantization { get; set; }

    /// <summary>The quantisation this bind applies, if any.</summary>
    public QuantizationOptions? EffectiveQuantization =>
        Quantization ?? (TargetDType is DType d && WeightQuantizer.TypeOf(d) is { } type ? new QuantizationOptions(type) : null);

    /// <summary>The float conversion this bind applies to every unquantised tensor, if any.</summary>
    public DType? EffectiveConversion => TargetDType is DType d && !d.IsQuantized() ? d : null;

    public IProgress<BindProgress>? Progress { get; set; }

    /// <summary>
    /// A checkpoint (folder or file) of the vision tower alone, in the layout of Hugging Face's CLIPVisionModel /
    /// SiglipVisionModel or the full CLIPModel / SiglipModel (keys <c>vision_model.*</c>), such as
    /// openai/clip-vit-large-patch14-336. When set, the tower's weights come from it and any copy inside the model
    /// checkpoint is ignored, as the reference does (it builds the tower from the original weights). Null: the
    /// tower comes from the model checkpoint.
    /// </summary>
    public string? VisionTowerPath { get; set; }
}

/// <summary>Progress of a bind: tensors and bytes done so far, and the tensor just bound.</summary>
public readonly record struct BindProgress(int TensorsDone, int TensorsTotal, long BytesDone, long BytesTotal, string Key, bool Converted);

/// <summary>Binds a variant's <see cref="WeightManifest"/> to a checkpoint, checking everything before touching data.</summary>
public static class WeightBinder
{
    /// <summary>Where a vision tower's keys start in its own checkpoint and in a model checkpoint that embeds it.</summary>
    public const string VisionModelPrefix = "vision_model.";

    /// <summary>Keys of a full CLIPModel / SiglipModel checkpoint that a vision tower never uses.</summary>
    private static readonly string[] SeparateTowerIgnoredKeys =
    [
        "text_model.*", "visual_projection.*", "text_projection.*", "logit_scale", "logit_bias", "vision_model.head.*",
    ];

    public static BoundWeights Bind(WeightManifest manifest, CheckpointFolder folder, BindOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(folder);
        options ??= new BindOptions();
        using var tower = options.VisionTowerPath is { } towerPath ? OpenTower(manifest, towerPath) : null;
        var quantization = options.EffectiveQuantization;
        var problems = Check(manifest, folder, tower, options.EffectiveConversion, out var ignored);
        if (quantization is not null) problems = [.. problems, .. CheckQuantization(manifest, folder, tower, quantization)];
        if (problems.Count > 0)
        {
            if (tower is null && LacksVisionTower(manifest, folder))
                throw new CheckpointException(folder.Path,
                    $"has no vision tower weights (none of the {manifest.Entries.Count(e => e.Role == WeightRole.Vision)} tensors under " +
                    $"'{VisionKeyPrefix(manifest)}'): give the tower's own checkpoint (keys {VisionModelPrefix}*, e.g. the CLIP or SigLIP model " +
                    "the variant was trained with) as --vision-tower, or BindOptions.VisionTowerPath");
            throw new CheckpointBindingException(tower is null ? folder.Path : $"{folder.Path} with vision tower {tower.Path}", manifest.Variant, problems);
        }

        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var mappings = new List<MappedFileStorage>();
        long mappedBytes = 0, copiedBytes = 0, bytesDone = 0;
        long BytesOf(WeightEntry e)
        {
            var (source, key) = SourceOf(e, folder, tower);
            return source.TryGetInfo(key, out var i) && i.DType is DType d ? d.ByteCount(e.ElementCount) : 0;
        }
        long bytesTotal = manifest.Entries.Sum(BytesOf);
        int done = 0;
        try
        {
            foreach (var entry in manifest.Entries)
            {
                if (tensors.ContainsKey(entry.Key)) continue;
                var (source, sourceKey) = SourceOf(entry, folder, tower);
                var tensor = source.GetTensor(sourceKey);
                bool converted = false;
                if (quantization?.TypeFor(entry) is { } type && !tensor.DType.IsQuantized())
                {
                    var original = tensor;
                    tensor = QuantizeOrExplain(original, type, source, sourceKey, quantization.ScaleDType, quantization.SearchScale);
                    if (quantization.Simulate) tensor = WeightQuantizer.Dequantize(tensor);
                    // The quantised copy is what runs: the file's pages of the original need not stay resident.
                    if (original.Storage is MappedFileStorage sourceMapping) sourceMapping.ReleaseResidentPages(original.ByteOffset, original.ByteLength);
                    converted = true;
                }
                else if (options.EffectiveConversion is DType target && target != tensor.DType && !tensor.DType.IsQuantized())
                {
                    tensor = DTypeConversion.Convert(tensor, target);
                    converted = true;
                }
                if (tensor.Storage is MappedFileStorage mapped)
                {
                    if (!mappings.Contains(mapped)) mappings.Add(mapped.AddReference());
                    mappedBytes += tensor.ByteLength;
                }
                else copiedBytes += tensor.ByteLength;
                tensors.Add(entry.Key, tensor);
                done++;
                bytesDone += BytesOf(entry);
                options.Progress?.Report(new BindProgress(done, manifest.Entries.Count, bytesDone, bytesTotal, entry.Key, converted));
            }
        }
        catch
        {
            foreach (var m in mappings) m.ReleaseReference();
            throw;
        }
        string? towerSource = !manifest.Entries.Any(e => e.Role == WeightRole.Vision) ? null : tower?.Path ?? folder.Path;
        return new BoundWeights(tensors, ignored, mappings, mappedBytes, copiedBytes, towerSource);
    }

    /// <summary>
    /// Every mismatch between the manifest and the checkpoint (missing, unexpected, wrong shape, wrong dtype),
    /// found from the headers alone; <paramref name="ignored"/> receives checkpoint keys matching the manifest's ignore patterns.
    /// </summary>
    public static IReadOnlyList<BindingProblem> Check(WeightManifest manifest, CheckpointFolder folder, DType? targetDType,
        out IReadOnlyList<string> ignored) => Check(manifest, folder, null, targetDType, out ignored);

    /// <summary>As <see cref="Check(WeightManifest, CheckpointFolder, DType?, out IReadOnlyList{string})"/>, with the
    /// vision tower's tensors looked up in <paramref name="tower"/> (keys <c>vision_model.*</c>) when it is given.
    /// The model checkpoint's own copy of the tower, if any, is then listed in <paramref name="ignored"/>.</summary>
    public static IReadOnlyList<BindingProblem> Check(WeightManifest manifest, CheckpointFolder folder, CheckpointFolder? tower,
        DType? targetDType, out IReadOnlyList<string> ignored)
    {
        var problems = new List<BindingProblem>();
        var expected = new HashSet<string>(StringComparer.Ordinal);
        var expectedInTower = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in manifest.Entries)
        {
            if (!expected.Add(entry.Key)) continue;
            var (source, key) = SourceOf(entry, folder, tower);
            if (!ReferenceEquals(source, folder)) expectedInTower.Add(key);
            string where = ReferenceEquals(source, folder) ? "" : $" in the vision tower {source.Path}";
            if (!source.TryGetInfo(key, out var info))
            {
                problems.Add(new(BindingProblemKind.Missing, key, $"expected {Tensor.FormatShape(entry.Shape)}{where}"));
                continue;
            }
            if (!info.Shape.AsSpan().SequenceEqual(entry.Shape))
                problems.Add(new(BindingProblemKind.WrongShape, key,
                    $"expected {Tensor.FormatShape(entry.Shape)}, checkpoint has {info.ShapeText} in {Path.GetFileName(info.FilePath)}{where}"));
            if (info.DType is not DType sourceType)
                problems.Add(new(BindingProblemKind.WrongDType, key,
                    $"checkpoint has {info.DTypeName}; supported: {CheckpointDTypes.SupportedList}{where}"));
            else if (targetDType is DType target && target != sourceType && !sourceType.IsQuantized() && !DTypeConversion.CanConvert(sourceType, target))
                problems.Add(new(BindingProblemKind.WrongDType, key,
                    $"checkpoint has {sourceType.SafetensorsName()}, which cannot be converted to {target.SafetensorsName()} at load{where}"));
        }
        var patterns = manifest.IgnoredKeys.Select(WildcardRegex).ToArray();
        var ignoredKeys = new List<string>();
        // With a separate tower, the model checkpoint's copy of it (if any) is not used.
        string replacedPrefix = tower is null ? "" : VisionKeyPrefix(manifest);
        foreach (var key in folder.Keys)
        {
            bool replacedByTower = replacedPrefix.Length > 0 && key.StartsWith(replacedPrefix, StringComparison.Ordinal);
            if (expected.Contains(key) && !replacedByTower) continue;
            if (replacedByTower || patterns.Any(p => p.IsMatch(key)))
                ignoredKeys.Add(key);
            else
            {
                folder.TryGetInfo(key, out var info);
                problems.Add(new(BindingProblemKind.Unexpected, key, $"{info.DTypeName} {info.ShapeText} in {Path.GetFileName(info.FilePath)}"));
            }
        }
        if (tower is not null)
        {
            var towerPatterns = manifest.IgnoredKeys.Select(TowerKeyOrNull).OfType<string>().Concat(SeparateTowerIgnoredKeys)
                .Select(WildcardRegex).ToArray();
            foreach (var key in tower.Keys)
            {
                if (expectedInTower.Contains(key)) continue;
                if (towerPatterns.Any(p => p.IsMatch(key))) ignoredKeys.Add(key);
                else
                {
                    tower.TryGetInfo(key, out var info);
                    problems.Add(new(BindingProblemKind.Unexpected, key,
                        $"{info.DTypeName} {info.ShapeText} in {Path.GetFileName(info.FilePath)} in the vision tower {tower.Path}"));
                }
            }
        }
        ignored = ignoredKeys;
        return problems;
    }

    /// <summary>True when the manifest has a vision tower and the checkpoint holds every tensor but the tower's (a
    /// released folder without the tower's copy: the tower must come from its own checkpoint). A checkpoint of another
    /// layout or variant misses more than the tower and gets the key-by-key report instead.</summary>
    public static bool LacksVisionTower(WeightManifest manifest, CheckpointFolder folder)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(folder);
        bool any = false;
        foreach (var entry in manifest.Entries)
        {
            bool present = folder.TryGetInfo(entry.Key, out _);
            if (entry.Role != WeightRole.Vision)
            {
                if (!present) return false;
                continue;
            }
            any = true;
            if (present) return false;
        }
        return any;
    }

    /// <summary>Where the tower's keys start in the model checkpoint ("model.image_tower.image_tower.vision_model.");
    /// empty when the variant has no tower.</summary>
    public static string VisionKeyPrefix(WeightManifest manifest)
    {
        var first = manifest.Entries.FirstOrDefault(e => e.Role == WeightRole.Vision);
        if (first is null) return "";
        int at = first.Key.IndexOf(VisionModelPrefix, StringComparison.Ordinal);
        return at < 0 ? "" : first.Key[..(at + VisionModelPrefix.Length)];
    }

    private static CheckpointFolder OpenTower(WeightManifest manifest, string towerPath)
    {
        var vision = manifest.Entries.Where(e => e.Role == WeightRole.Vision).ToArray();
        if (vision.Length == 0)
            throw new CheckpointException(towerPath, $"was given as a vision tower, but {manifest.Variant} has no vision tower");
        // CuMo's tower has a mixture of experts in every MLP: the original CLIP weights cannot stand in for it.
        var moe = vision.FirstOrDefault(e => TowerKeyOrNull(e.Key) is null || e.Key.Contains(".experts.", StringComparison.Ordinal));
        if (moe is not null)
            throw new CheckpointException(towerPath,
                $"was given as a vision tower, but {manifest.Variant}'s tower is part of its own checkpoint ('{moe.Key}' has no counterpart in a CLIP or SigLIP model)");
        return CheckpointFolder.Open(towerPath);
    }

    private static (CheckpointFolder Source, string Key) SourceOf(WeightEntry entry, CheckpointFolder folder, CheckpointFolder? tower) =>
        tower is not null && entry.Role == WeightRole.Vision && TowerKeyOrNull(entry.Key) is string towerKey ? (tower, towerKey) : (folder, entry.Key);

    /// <summary>"model.image_tower.image_tower.vision_model.X" → "vision_model.X"; null for keys outside a tower.</summary>
    private static string? TowerKeyOrNull(string key)
    {
        int at = key.IndexOf(VisionModelPrefix, StringComparison.Ordinal);
        return at < 0 ? null : key[at..];
    }

    /// <summary>Quantises one checkpoint tensor; a value it cannot quantise (NaN, ±∞) is the checkpoint's fault.</summary>
    internal static Tensor QuantizeOrExplain(Tensor source, QuantizationType type, CheckpointFolder folder, string key,
        DType scaleDType = DType.BF16, bool searchScale = false)
    {
        try
        {
            return WeightQuantizer.Quantize(source, type, scaleDType, searchScale);
        }
        catch (ArgumentException e)
        {
            string file = folder.TryGetInfo(key, out var info) ? info.FilePath : folder.Path;
            throw new CheckpointException(file, $"cannot quantise tensor '{key}' to {WeightQuantizer.Name(type)}: {e.Message}", e);
        }
    }

    /// <summary>Tensors stored quantised as another type than the one asked for (re-quantising would compound the error).</summary>
    private static IEnumerable<BindingProblem> CheckQuantization(WeightManifest manifest, CheckpointFolder folder, CheckpointFolder? tower,
        QuantizationOptions quantization)
    {
        foreach (var entry in manifest.Entries.DistinctBy(e => e.Key))
        {
            var (source, key) = SourceOf(entry, folder, tower);
            if (!source.TryGetInfo(key, out var info) || info.DType is not DType stored || !stored.IsQuantized()) continue;
            var wanted = quantization.TypeFor(entry);
            if (wanted is { } type && WeightQuantizer.DTypeOf(type) != stored)
                yield return new(BindingProblemKind.WrongDType, entry.Key,
                    $"checkpoint has it quantised as {WeightQuantizer.Name(WeightQuantizer.TypeOf(stored)!.Value)}, not {WeightQuantizer.Name(type)}; quantise the original checkpoint instead");
        }
    }

    /// <summary>'*' matches any run of characters (dots included); everything else is literal.</summary>
    internal static Regex WildcardRegex(string pattern) =>
        new("^" + string.Join(".*", pattern.Split('*').Select(Regex.Escape)) + "$", RegexOptions.CultureInvariant | RegexOptions.Singleline);
}

/// <summary>Conversions between the float weight dtypes, done once at load. Round to nearest even, like torch's .to().</summary>
public static class DTypeConversion
{
    private const int Chunk = 1 << 16;

    public static bool CanConvert(DType source, DType target) =>
        source == target || (source != DType.I8 && target != DType.I8);

    public static Tensor Convert(Tensor source, DType target)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.DType == target) return source;
        if (!CanConvert(source.DType, target))
            throw new InvalidOperationException($"cannot convert {source} to {target}");
        var result = new Tensor(new NativeStorage(source.Length * target.SizeInBytes(), zero: false), 0, target, source.Shape, source.Name);
        long chunks = (source.Length + Chunk - 1) / Chunk;
        Parallel.For(0L, chunks, c =>
        {
            long start = c * Chunk;
            int n = (int)Math.Min(Chunk, source.Length - start);
            ConvertChunk(source, result, start, n);
        });
        return result;
    }

    private static unsafe void ConvertChunk(Tensor source, Tensor result, long start, int n)
    {
        float[]? rented = null;
        Span<float> floats = source.DType == DType.F32
            ? new Span<float>((float*)source.Data + start, n)
            : (rented = System.Buffers.ArrayPool<float>.Shared.Rent(n)).AsSpan(0, n);
        switch (source.DType)
        {
            case DType.F16:
                System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>((Half*)source.Data + start, n), floats);
                break;
            case DType.BF16:
                {
                    var src = new ReadOnlySpan<ushort>((ushort*)source.Data + start, n);
                    for (int i = 0; i < n; i++) floats[i] = BFloat16ToSingle(src[i]);
                    break;
                }
        }
        switch (result.DType)
        {
            case DType.F32: floats.CopyTo(new Span<float>((float*)result.Data + start, n)); break;
            case DType.F16: System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(floats, new Span<Half>((Half*)result.Data + start, n)); break;
            case DType.BF16:
                {
                    Kernels.Narrow.F32ToBF16(floats, new Span<ushort>((ushort*)result.Data + start, n));
                    break;
                }
        }
        if (rented is not null) System.Buffers.ArrayPool<float>.Shared.Return(rented);
    }

    public static float BFloat16ToSingle(ushort bits) => Kernels.NumberFormats.BF16ToFloat(bits);

    /// <summary>Round to nearest, ties to even; NaN stays a (quiet) NaN with its sign.</summary>
    public static ushort SingleToBFloat16(float value) => Kernels.NumberFormats.FloatToBF16(value);
}
