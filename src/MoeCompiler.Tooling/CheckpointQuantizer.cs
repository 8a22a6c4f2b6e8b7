using System.Text.Json;
using MoeCompiler.Runtime.Tensors;

using MoeCompiler.Runtime.Checkpoints;

namespace MoeCompiler.Tooling;

/// <summary>What <see cref="CheckpointQuantizer.Write"/> produced.</summary>
public sealed record QuantizedCheckpoint(IReadOnlyList<string> Files, int QuantizedTensors, int KeptTensors, long SourceBytes, long WrittenBytes,
    IReadOnlyList<string> CopiedFiles);

/// <summary>
/// Writes a quantised copy of a checkpoint (docs/quantization.md): tensor by tensor, so neither the source nor the
/// result has to fit in memory; safetensors shards of at most <c>maxShardBytes</c> (a quantised tensor stays in one
/// shard with its scales) plus an index when there are several; the source folder's other files (config.json,
/// tokenizer files) are copied. The output folder must not exist or must be empty: nothing is ever overwritten.
/// </summary>
public static class CheckpointQuantizer
{
    public const long DefaultShardBytes = 4L << 30;

    private static readonly string[] WeightFileEndings = [".safetensors", ".bin", ".pt", ".pth", ".index.json", ".partial"];

    public static QuantizedCheckpoint Write(WeightManifest manifest, CheckpointFolder source, string outputFolder, QuantizationOptions options,
        long maxShardBytes = DefaultShardBytes, IProgress<BindProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(outputFolder);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        string root = Path.GetFullPath(outputFolder);
        if (File.Exists(root)) throw new CheckpointException(root, "is a file; the output names a folder to create");
        if (Directory.Exists(root) && Directory.EnumerateFileSystemEntries(root).Any())
            throw new CheckpointException(root, "the folder exists and is not empty; refusing to write into it (choose a new folder)");

        var problems = WeightBinder.Check(manifest, source, null, out _).ToList();
        var plan = new List<(WeightEntry Entry, CheckpointTensorInfo Info, QuantizationType? Type)>();
        foreach (var entry in manifest.Entries.DistinctBy(e => e.Key))
        {
            if (!source.TryGetInfo(entry.Key, out var info) || info.DType is not DType stored) continue;
            var type = options.TypeFor(entry);
            if (stored.IsQuantized())
            {
                if (type is { } wanted && WeightQuantizer.DTypeOf(wanted) != stored)
                    problems.Add(new(BindingProblemKind.WrongDType, entry.Key,
                        $"already quantised as {WeightQuantizer.Name(WeightQuantizer.TypeOf(stored)!.Value)}, not {WeightQuantizer.Name(wanted)}; quantise the original checkpoint instead"));
                type = null; // written as stored
            }
            plan.Add((entry, info, type));
        }
        if (problems.Count > 0) throw new CheckpointBindingException(source.Path, manifest.Variant, problems);

        // Every tensor as it will be written (a quantised one is followed by its scales), in manifest order.
        var pending = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var items = new List<StreamedTensor>();
        long sourceBytes = 0;
        int done = 0, quantized = 0;
        foreach (var (entry, info, type) in plan)
        {
            var stored = info.DType!.Value;
            sourceBytes += stored.ByteCount(entry.ElementCount);
            if (type is { } t)
            {
                quantized++;
                int rows = entry.Shape[0], groups = entry.Shape[1] / WeightQuantizer.GroupSize;
                items.Add(new StreamedTensor(entry.Key, WeightQuantizer.DTypeOf(t), entry.Shape, stream =>
                {
                    var original = source.GetTensor(entry.Key);
                    var q = WeightBinder.QuantizeOrExplain(original, t, source, entry.Key);
                    if (original.Storage is MappedFileStorage mapped) mapped.ReleaseResidentPages(original.ByteOffset, original.ByteLength);
                    WriteBytes(stream, q);
                    pending[entry.Key] = q;
                }));
                items.Add(new StreamedTensor(entry.Key + SafetensorsFile.Int8ScalesSuffix, DType.BF16, [rows, groups], stream =>
                {
                    var q = pending[entry.Key];
                    pending.Remove(entry.Key);
                    WriteBytes(stream, q.Scales!);
                    q.Storage.Dispose();
                    q.Scales!.Storage.Dispose();
                    progress?.Report(new BindProgress(++done, plan.Count, 0, 0, entry.Key, Converted: true));
                }));
            }
            else
            {
                bool withScales = stored.IsQuantized();
                items.Add(new StreamedTensor(entry.Key, stored, entry.Shape, stream =>
                {
                    var tensor = source.GetTensor(entry.Key);
                    WriteBytes(stream, tensor);
                    if (withScales) pending[entry.Key] = tensor;
                    else progress?.Report(new BindProgress(++done, plan.Count, 0, 0, entry.Key, Converted: false));
                }));
                if (withScales)
                {
                    var scalesInfo = source.GetTensor(entry.Key).Scales!;
                    items.Add(new StreamedTensor(entry.Key + SafetensorsFile.Int8ScalesSuffix, scalesInfo.DType, scalesInfo.Shape.ToArray(), stream =>
                    {
                        WriteBytes(stream, pending[entry.Key].Scales!);
                        pending.Remove(entry.Key);
                        progress?.Report(new BindProgress(++done, plan.Count, 0, 0, entry.Key, Converted: false));
                    }));
                }
            }
        }

        var shards = new List<List<StreamedTensor>>();
        long current = 0;
        foreach (var item in items)
        {
            bool companion = item.Key.EndsWith(SafetensorsFile.Int8ScalesSuffix, StringComparison.Ordinal) && shards.Count > 0
                             && shards[^1][^1].Key + SafetensorsFile.Int8ScalesSuffix == item.Key;
            if (shards.Count == 0 || (!companion && current > 0 && current + item.ByteLength > maxShardBytes))
            {
                shards.Add([]);
                current = 0;
            }
            shards[^1].Add(item);
            current += item.ByteLength;
        }
        if (shards.Count == 0) shards.Add([]);
        var names = shards.Count == 1
            ? new[] { "model.safetensors" }
            : Enumerable.Range(1, shards.Count).Select(i => $"model-{i:D5}-of-{shards.Count:D5}.safetensors").ToArray();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["format"] = "pt",
            [SafetensorsFile.QuantizationFormatKey] = SafetensorsFile.QuantizationFormatVersion,
            [SafetensorsFile.QuantizationTypeKey] = WeightQuantizer.Name(options.Type),
            ["moe.quantization.embeddings"] = options.EmbeddingType is { } e ? WeightQuantizer.Name(e) : "kept",
            ["moe.quantization.tower"] = options.TowerType is { } tower ? WeightQuantizer.Name(tower) : "kept",
        };

        bool created = !Directory.Exists(root);
        var written = new List<string>();
        try
        {
            Directory.CreateDirectory(root);
            for (int i = 0; i < shards.Count; i++)
            {
                string file = Path.Combine(root, names[i]);
                SafetensorsWriter.WriteStreamed(file, shards[i], metadata);
                written.Add(file);
            }
            if (shards.Count > 1)
            {
                string index = Path.Combine(root, CheckpointFolder.SafetensorsIndexName);
                File.WriteAllBytes(index, IndexJson(shards, names));
                written.Add(index);
            }
            var copied = new List<string>();
            if (Directory.Exists(source.Path))
                foreach (string file in Directory.EnumerateFiles(source.Path).Order(StringComparer.Ordinal))
                {
                    string name = Path.GetFileName(file);
                    if (WeightFileEndings.Any(end => name.EndsWith(end, StringComparison.OrdinalIgnoreCase)) || name.StartsWith('.')) continue;
                    string target = Path.Combine(root, name);
                    File.Copy(file, target, overwrite: false);
                    written.Add(target);
                    copied.Add(name);
                }
            return new QuantizedCheckpoint(written, quantized, plan.Count - quantized, sourceBytes, items.Sum(i => i.ByteLength), copied);
        }
        catch (Exception ex)
        {
            foreach (string file in written) File.Delete(file);
            if (created && Directory.Exists(root) && !Directory.EnumerateFileSystemEntries(root).Any()) Directory.Delete(root);
            if (ex is IOException or UnauthorizedAccessException) throw new CheckpointException(root, "cannot write the quantised checkpoint: " + ex.Message, ex);
            throw;
        }
        finally
        {
            foreach (var q in pending.Values) GC.KeepAlive(q);
        }
    }

    private static unsafe void WriteBytes(Stream stream, Tensor tensor)
    {
        const int Chunk = 1 << 24;
        byte* p = (byte*)tensor.Data;
        for (long offset = 0; offset < tensor.ByteLength; offset += Chunk)
            stream.Write(new ReadOnlySpan<byte>(p + offset, (int)Math.Min(Chunk, tensor.ByteLength - offset)));
        GC.KeepAlive(tensor);
    }

    private static byte[] IndexJson(List<List<StreamedTensor>> shards, string[] names)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", shards.Sum(s => s.Sum(t => t.ByteLength)));
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (key, file) in shards.SelectMany((s, i) => s.Select(t => (t.Key, names[i]))).OrderBy(p => p.Key, StringComparer.Ordinal))
                json.WriteString(key, file);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }
}
