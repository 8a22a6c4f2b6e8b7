using System.Buffers.Binary;
using System.Globalization;
using System.Text.Json;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// A validated, memory-mapped <c>.safetensors</c> file. The whole header is checked when the file is opened
/// (length bounds, strict JSON, no duplicate keys, known dtypes, shapes that fit, offsets inside the data area,
/// byte size = element size × elements, no overlapping tensors), so later reads cannot go out of bounds.
/// Tensors are zero-copy views of the mapping unless their offset is misaligned for their element type.
/// Quantised tensors carry their scales (F32 or BF16) in a companion tensor named <c>key + ".scales"</c>: an I8 tensor is
/// int8; a U8 tensor with scales in a file whose metadata has <see cref="QuantizationFormatKey"/> is q4, two values per
/// byte, so its logical shape has twice the stored columns (docs/quantization.md).
/// </summary>
public sealed class SafetensorsFile : IDisposable, ICheckpointFile
{
    /// <summary>The largest header accepted (the reference implementation's limit too).</summary>
    public const long MaxHeaderBytes = 100_000_000;
    public const string Int8ScalesSuffix = ".scales";
    private const string MetadataKey = "__metadata__";
    /// <summary>Header metadata naming the version of the quantised layouts (docs/quantization.md).</summary>
    public const string QuantizationFormatKey = "moe.quantization.format";
    public const string QuantizationFormatVersion = "1";
    /// <summary>Header metadata naming the type <c>moe quantize</c> chose (int8 or q4); informational.</summary>
    public const string QuantizationTypeKey = "moe.quantization.type";

    private readonly MappedFileStorage _storage;
    private readonly Dictionary<string, Entry> _entries;
    private readonly long _dataStart;

    internal sealed record Entry(CheckpointTensorInfo Info, long Begin, long End, string? ScalesKey);

    private SafetensorsFile(string path, MappedFileStorage storage, Dictionary<string, Entry> entries,
        Dictionary<string, string> metadata, long dataStart)
    {
        FilePath = path;
        _storage = storage;
        _entries = entries;
        Metadata = metadata;
        _dataStart = dataStart;
    }

    public string FilePath { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Tensor keys, without the int8 scale companions.</summary>
    public IEnumerable<string> Keys => _entries.Where(e => !IsCompanion(e.Key)).Select(e => e.Key);
    public IEnumerable<CheckpointTensorInfo> Tensors => Keys.Select(k => _entries[k].Info);
    private readonly HashSet<string> _companions = new(StringComparer.Ordinal);
    private bool IsCompanion(string key) => _companions.Contains(key);

    public bool TryGetInfo(string key, out CheckpointTensorInfo info)
    {
        if (_entries.TryGetValue(key, out var e) && !IsCompanion(key)) { info = e.Info; return true; }
        info = null!;
        return false;
    }

    public static SafetensorsFile Open(string path)
    {
        var storage = CheckpointMapping.Open(path);
        try
        {
            var (entries, metadata, dataStart) = ParseHeader(path, storage);
            var file = new SafetensorsFile(path, storage, entries, metadata, dataStart);
            file.PairInt8Scales();
            return file;
        }
        catch
        {
            storage.ReleaseReference();
            throw;
        }
    }

    /// <summary>Reads and validates the length prefix and header of a mapped file.</summary>
    internal static (Dictionary<string, Entry> Entries, Dictionary<string, string> Metadata, long DataStart) ParseHeader(
        string path, MappedFileStorage storage)
    {
        long fileLength = storage.ByteLength;
        if (fileLength < 8)
            throw new CheckpointException(path, $"file is {fileLength} bytes, too short for a safetensors header");
        ulong declared = BinaryPrimitives.ReadUInt64LittleEndian(storage.Bytes(0, 8));
        if (declared < 2)
            throw new CheckpointException(path, $"header length {declared} is too small for a JSON object");
        if (declared > MaxHeaderBytes)
            throw new CheckpointException(path, $"header length {declared} exceeds the {MaxHeaderBytes}-byte limit");
        if (declared > (ulong)(fileLength - 8))
            throw new CheckpointException(path,
                $"header length {declared} runs past the end of the file ({fileLength} bytes): truncated or not safetensors");
        int headerLength = (int)declared;
        var header = storage.Bytes(8, headerLength).ToArray();
        long dataStart = 8 + headerLength;
        long dataLength = fileLength - dataStart;
        var parsed = ParseHeaderJson(path, header, dataLength);
        return (parsed.Entries, parsed.Metadata, dataStart);
    }

    internal static (Dictionary<string, Entry> Entries, Dictionary<string, string> Metadata) ParseHeaderJson(
        string path, byte[] header, long dataLength)
    {
        if (header.Length == 0 || header[0] != (byte)'{')
            throw new CheckpointException(path, "header does not start with '{'");
        // JsonDocument checks UTF-8 inside strings only when they are read; check it all up front.
        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new CheckpointException(path, "header is not valid UTF-8");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header, new JsonDocumentOptions
            {
                AllowTrailingCommas = false,
                CommentHandling = JsonCommentHandling.Disallow,
                MaxDepth = 16,
            });
        }
        catch (JsonException e)
        {
            throw new CheckpointException(path, "header is not valid JSON: " + e.Message, e);
        }
        using (document)
        {
            try
            {
                return ReadHeaderObject(path, document.RootElement, dataLength);
            }
            catch (InvalidOperationException e)
            {
                // escapes that decode to invalid UTF-16 (lone surrogates) surface only when a string is read
                throw new CheckpointException(path, "header holds an invalid string: " + e.Message, e);
            }
        }
    }

    private static (Dictionary<string, Entry> Entries, Dictionary<string, string> Metadata) ReadHeaderObject(
        string path, JsonElement root, long dataLength)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new CheckpointException(path, "header JSON is not an object");
        var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        bool sawMetadata = false;
        foreach (var property in root.EnumerateObject())
        {
            string key = property.Name;
            if (key == MetadataKey)
            {
                if (sawMetadata) throw new CheckpointException(path, "header has '__metadata__' twice");
                sawMetadata = true;
                ReadMetadata(path, property.Value, metadata);
                continue;
            }
            if (entries.ContainsKey(key))
                throw new CheckpointException(path, $"header lists tensor '{key}' twice");
            entries.Add(key, ReadEntry(path, key, property.Value, dataLength));
        }
        CheckNoOverlaps(path, entries.Values);
        return (entries, metadata);
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null) return;
        if (value.ValueKind != JsonValueKind.Object)
            throw new CheckpointException(path, "'__metadata__' is not an object of strings");
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
                throw new CheckpointException(path, $"'__metadata__' value for '{item.Name}' is not a string");
            if (!metadata.TryAdd(item.Name, item.Value.GetString()!))
                throw new CheckpointException(path, $"'__metadata__' has key '{item.Name}' twice");
        }
    }

    private static Entry ReadEntry(string path, string key, JsonElement value, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new CheckpointException(path, $"tensor '{key}': entry is not an object");
        string? dtypeName = null;
        int[]? shape = null;
        long[]? offsets = null;
        foreach (var field in value.EnumerateObject())
        {
            switch (field.Name)
            {
                case "dtype" when dtypeName is null:
                    if (field.Value.ValueKind != JsonValueKind.String)
                        throw new CheckpointException(path, $"tensor '{key}': dtype is not a string");
                    dtypeName = field.Value.GetString()!;
                    break;
                case "shape" when shape is null:
                    shape = ReadIntegers(path, key, "shape", field.Value, int.MaxValue).Select(v => (int)v).ToArray();
                    break;
                case "data_offsets" when offsets is null:
                    offsets = ReadIntegers(path, key, "data_offsets", field.Value, long.MaxValue);
                    if (offsets.Length != 2)
                        throw new CheckpointException(path, $"tensor '{key}': data_offsets must hold exactly two numbers");
                    break;
                case "dtype" or "shape" or "data_offsets":
                    throw new CheckpointException(path, $"tensor '{key}': field '{field.Name}' appears twice");
                default:
                    throw new CheckpointException(path, $"tensor '{key}': unknown field '{field.Name}'");
            }
        }
        if (dtypeName is null || shape is null || offsets is null)
            throw new CheckpointException(path,
                $"tensor '{key}': entry needs 'dtype', 'shape' and 'data_offsets'");
        if (!CheckpointDTypes.TryGetSafetensorsSize(dtypeName, out int elementSize))
            throw new CheckpointException(path,
                $"tensor '{key}': unknown dtype '{dtypeName}' (MoeCompiler supports {CheckpointDTypes.SupportedList})");
        long elements = 1;
        foreach (int d in shape)
        {
            if (elements != 0 && d > long.MaxValue / elements)
                throw new CheckpointException(path, $"tensor '{key}': shape {Tensor.FormatShape(shape)} overflows");
            elements *= d;
        }
        if (elements != 0 && elementSize > long.MaxValue / elements)
            throw new CheckpointException(path, $"tensor '{key}': shape {Tensor.FormatShape(shape)} overflows");
        long byteSize = elements * elementSize;
        long begin = offsets[0], end = offsets[1];
        if (begin > end)
            throw new CheckpointException(path, $"tensor '{key}': data_offsets [{begin}, {end}] run backwards");
        if (end > dataLength)
            throw new CheckpointException(path,
                $"tensor '{key}': data_offsets [{begin}, {end}] lie outside the {dataLength}-byte data area (truncated file?)");
        if (end - begin != byteSize)
            throw new CheckpointException(path,
                $"tensor '{key}': {dtypeName} {Tensor.FormatShape(shape)} needs {byteSize} bytes but data_offsets span {end - begin}");
        var info = new CheckpointTensorInfo(key, dtypeName, CheckpointDTypes.FromName(dtypeName), shape, path);
        return new Entry(info, begin, end, null);
    }

    private static long[] ReadIntegers(string path, string key, string field, JsonElement value, long max)
    {
        if (value.ValueKind != JsonValueKind.Array)
            throw new CheckpointException(path, $"tensor '{key}': {field} is not an array");
        var result = new long[value.GetArrayLength()];
        int i = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long v) || v < 0 || v > max)
                throw new CheckpointException(path,
                    $"tensor '{key}': {field} holds {item.GetRawText()}, not an integer in [0, {max.ToString(CultureInfo.InvariantCulture)}]");
            result[i++] = v;
        }
        return result;
    }

    private static void CheckNoOverlaps(string path, IEnumerable<Entry> entries)
    {
        Entry? previous = null;
        foreach (var e in entries.Where(e => e.End > e.Begin).OrderBy(e => e.Begin))
        {
            if (previous is not null && e.Begin < previous.End)
                throw new CheckpointException(path,
                    $"tensors '{previous.Info.Key}' [{previous.Begin}, {previous.End}) and '{e.Info.Key}' [{e.Begin}, {e.End}) overlap");
            previous = e;
        }
    }

    private void PairInt8Scales()
    {
        bool quantizedFile = Metadata.TryGetValue(QuantizationFormatKey, out string? version);
        if (quantizedFile && version != QuantizationFormatVersion)
            throw new CheckpointException(FilePath,
                $"quantised layout version '{version}' ({QuantizationFormatKey}) is not one this MoeCompiler reads (it reads {QuantizationFormatVersion}); re-run 'moe quantize' with this version");
        foreach (var (key, entry) in _entries.ToArray())
        {
            bool q4 = quantizedFile && entry.Info.DTypeName == "U8";
            if (entry.Info.DType != DType.I8 && !q4) continue;
            string scalesKey = key + Int8ScalesSuffix;
            if (!_entries.ContainsKey(scalesKey)) continue;
            var info = entry.Info;
            if (q4)
            {
                var shape = info.Shape.ToArray();
                if (shape.Length != 2 || shape[1] > int.MaxValue / 2)
                    throw new CheckpointException(FilePath, $"q4 tensor '{key}' must be stored as U8 [rows, columns / 2], not {info.ShapeText}");
                shape[1] *= 2;
                info = info with { DTypeName = "Q4", DType = DType.Q4, Shape = shape };
            }
            _entries[key] = entry with { Info = info, ScalesKey = scalesKey };
            _companions.Add(scalesKey);
        }
    }

    public Tensor GetTensor(string key)
    {
        if (!_entries.TryGetValue(key, out var e))
            throw new CheckpointException(FilePath, $"no tensor '{key}'");
        var info = e.Info;
        if (info.DType is not DType dtype)
            throw new CheckpointException(FilePath, CheckpointDTypes.UnsupportedMessage(key, info.DTypeName));
        Tensor? scales = null;
        int groupSize = 0;
        if (dtype.IsQuantized())
        {
            if (e.ScalesKey is null)
                throw new CheckpointException(FilePath, $"int8 tensor '{key}' has no scales tensor '{key}{Int8ScalesSuffix}'");
            scales = GetTensor(e.ScalesKey);
            groupSize = Int8GroupSize(FilePath, key, info.Shape, scales);
            if (dtype == DType.Q4 && groupSize != WeightQuantizer.GroupSize)
                throw new CheckpointException(FilePath,
                    $"scales of q4 tensor '{key}' {Tensor.FormatShape(scales.Shape)} do not give one scale per {WeightQuantizer.GroupSize} columns of {info.ShapeText}");
        }
        return View(_storage, _dataStart + e.Begin, dtype, info.Shape, key, scales, groupSize);
    }

    internal static int Int8GroupSize(string path, string key, int[] shape, Tensor scales)
    {
        if (scales.DType is not (DType.F32 or DType.BF16))
            throw new CheckpointException(path, $"scales of quantised tensor '{key}' are {scales.DType}, not F32 or BF16");
        int columns = shape.Length == 0 ? 1 : shape[^1];
        long rows = columns == 0 ? 0 : shape.Aggregate(1L, (a, d) => a * d) / columns;
        if (scales.Rank == 1 && scales.Dim(0) == rows) return 0;
        if (scales.Rank == 2 && scales.Dim(0) == rows && scales.Dim(1) > 0 && columns % scales.Dim(1) == 0)
            return columns / scales.Dim(1);
        throw new CheckpointException(path,
            $"scales of quantised tensor '{key}' {Tensor.FormatShape(scales.Shape)} fit neither per-row nor per-group scaling of {Tensor.FormatShape(shape)}");
    }

    /// <summary>A view of the mapped bytes, or a one-time aligned copy when the offset is misaligned for the dtype.</summary>
    internal static Tensor View(TensorStorage storage, long byteOffset, DType dtype, int[] shape, string key,
        Tensor? scales, int groupSize)
    {
        if (dtype == DType.Q4 || (storage.Pointer + (nint)byteOffset) % dtype.SizeInBytes() == 0)
            return new Tensor(storage, byteOffset, dtype, shape, key, scales, groupSize);
        var probe = new Tensor(storage, byteOffset, dtype, shape, key, scales, groupSize);
        var copy = new NativeStorage(probe.ByteLength, zero: false);
        unsafe
        {
            Buffer.MemoryCopy((void*)probe.Data, (void*)copy.Pointer, probe.ByteLength, probe.ByteLength);
        }
        GC.KeepAlive(storage); // the mapped file must outlive the copy from its raw pointer
        return new Tensor(copy, 0, dtype, shape, key, scales, groupSize);
    }

    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _storage.ReleaseReference();
    }
}
