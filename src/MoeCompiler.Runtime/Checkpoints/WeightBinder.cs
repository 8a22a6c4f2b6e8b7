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
}

/// <summary>Progress of a bind: tensors and bytes done so far, and the tensor just bound.</summary>
public readonly record struct BindProgress(int TensorsDone, int TensorsTotal, long BytesDone, long BytesTotal, string Key, bool Converted);

/// <summary>Binds a variant's <see cref="WeightManifest"/> to a checkpoint, checking everything before touching data.</summary>
public static class WeightBinder
{
    public static BoundWeights Bind(WeightManifest manifest, CheckpointFolder folder, BindOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(folder);
        options ??= new BindOptions();
        var quantization = options.EffectiveQuantization;
        var problems = Check(manifest, folder, options.EffectiveConversion, out var ignored);
        if (quantization is not null) problems = [.. problems, .. CheckQuantization(manifest, folder, quantization)];
        if (problems.Count > 0) throw new CheckpointBindingException(folder.Path, manifest.Variant, problems);

        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var mappings = new List<MappedFileStorage>();
        long mappedBytes = 0, copiedBytes = 0, bytesDone = 0;
        long bytesTotal = manifest.Entries.Sum(e => folder.TryGetInfo(e.Key, out var i) && i.DType is DType d ? d.ByteCount(e.ElementCount) : 0);
        int done = 0;
        try
        {
            foreach (var entry in manifest.Entries)
            {
                if (tensors.ContainsKey(entry.Key)) continue;
                var tensor = folder.GetTensor(entry.Key);
                bool converted = false;
                if (quantization?.TypeFor(entry) is { } type && !tensor.DType.IsQuantized())
                {
                    var source = tensor;
                    tensor = QuantizeOrExplain(source, type, folder, entry.Key);
                    // The quantised copy is what runs: the file's pages of the original need not stay resident.
                    if (source.Storage is MappedFileStorage sourceMapping) sourceMapping.ReleaseResidentPages(source.ByteOffset, source.ByteLength);
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
                bytesDone += folder.TryGetInfo(entry.Key, out var info) && info.DType is DType d ? d.ByteCount(entry.ElementCount) : 0;
                options.Progress?.Report(new BindProgress(done, manifest.Entries.Count, bytesDone, bytesTotal, entry.Key, converted));
            }
        }
        catch
        {
            foreach (var m in mappings) m.ReleaseReference();
            throw;
        }
        return new BoundWeights(tensors, ignored, mappings, mappedBytes, copiedBytes);
    }

    /// <summary>
    /// Every mismatch between the manifest and the checkpoint (missing, unexpected, wrong shape, wrong dtype),
    /// found from the headers alone; <paramref name="ignored"/> receives checkpoint keys matching the manifest's ignore patterns.
    /// </summary>
    public static IReadOnlyList<BindingProblem> Check(WeightManifest manifest, CheckpointFolder folder, DType? targetDType,
        out IReadOnlyList<string> ignored)
    {
        var problems = new List<BindingProblem>();
        var expected = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in manifest.Entries)
        {
            if (!expected.Add(entry.Key)) continue;
            if (!folder.TryGetInfo(entry.Key, out var info))
            {
                problems.Add(new(BindingProblemKind.Missing, entry.Key, $"expected {Tensor.FormatShape(entry.Shape)}"));
                continue;
            }
            if (!info.Shape.AsSpan().SequenceEqual(entry.Shape))
                problems.Add(new(BindingProblemKind.WrongShape, entry.Key,
                    $"expected {Tensor.FormatShape(entry.Shape)}, checkpoint has {info.ShapeText} in {Path.GetFileName(info.FilePath)}"));
            if (info.DType is not DType source)
                problems.Add(new(BindingProblemKind.WrongDType, entry.Key,
                    $"checkpoint has {info.DTypeName}; supported: {CheckpointDTypes.SupportedList}"));
            else if (targetDType is DType target && target != source && !source.IsQuantized() && !DTypeConversion.CanConvert(source, target))
                problems.Add(new(BindingProblemKind.WrongDType, entry.Key,
                    $"checkpoint has {source.SafetensorsName()}, which cannot be converted to {target.SafetensorsName()} at load"));
        }
        var patterns = manifest.IgnoredKeys.Select(WildcardRegex).ToArray();
        var ignoredKeys = new List<string>();
        foreach (var key in folder.Keys)
        {
            if (expected.Contains(key)) continue;
            if (patterns.Any(p => p.IsMatch(key))) ignoredKeys.Add(key);
            else
            {
                folder.TryGetInfo(key, out var info);
                problems.Add(new(BindingProblemKind.Unexpected, key, $"{info.DTypeName} {info.ShapeText} in {Path.GetFileName(info.FilePath)}"));
            }
        }
        ignored = ignoredKeys;
        return problems;
    }

    /// <summary>Quantises one checkpoint tensor; a value it cannot quantise (NaN, ±∞) is the checkpoint's fault.</summary>
    internal static Tensor QuantizeOrExplain(Tensor source, QuantizationType type, CheckpointFolder folder, string key)
    {
        try
        {
            return WeightQuantizer.Quantize(source, type);
        }
        catch (ArgumentException e)
        {
            string file = folder.TryGetInfo(key, out var info) ? info.FilePath : folder.Path;
            throw new CheckpointException(file, $"cannot quantise tensor '{key}' to {WeightQuantizer.Name(type)}: {e.Message}", e);
        }
    }

    /// <summary>Tensors stored quantised as another type than the one asked for (re-quantising would compound the error).</summary>
    private static IEnumerable<BindingProblem> CheckQuantization(WeightManifest manifest, CheckpointFolder folder, QuantizationOptions quantization)
    {
        foreach (var entry in manifest.Entries.DistinctBy(e => e.Key))
        {
            if (!folder.TryGetInfo(entry.Key, out var info) || info.DType is not DType stored || !stored.IsQuantized()) continue;
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
