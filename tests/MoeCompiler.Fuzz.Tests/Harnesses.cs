using System.Text;
using MoeCompiler.Generators.Parsing;
using MoeCompiler.Imaging;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Tokenizers;
using MoeCompiler.Tooling;

namespace MoeCompiler.Fuzz.Tests;

/// <summary>One harness per parser of user files; each feeds an input the way the tool reads that file.</summary>
internal static class Harnesses
{
    private static readonly ImageDecodeOptions ImageOptions = new() { MaxPixels = 16L << 20, MaxDegreeOfParallelism = 1 };

    /// <summary>Opens a checkpoint and reads every tensor: a file that opens must be readable in full without faulting.</summary>
    private static void OpenAndTouch(string path)
    {
        using var folder = CheckpointFolder.Open(path);
        foreach (var key in folder.Keys)
            if (folder.TryGetTensor(key, out var tensor)) _ = tensor.ToFloatArray().Sum();
    }

    /// <summary>Loads a tokenizer and uses it: encoding and decoding must not fail on a file that loaded.</summary>
    private static void LoadAndUse(Func<ITokenizer> load)
    {
        var tokenizer = load();
        int[] ids = tokenizer.Encode("hello world, hello! <|endoftext|> 12 é 🙂");
        _ = tokenizer.Decode(ids);
        _ = tokenizer.Decode([0, 1, tokenizer.VocabSize - 1, tokenizer.VocabSize, -1]);
    }

    private static string Write(string folder, string name, byte[] input)
    {
        string path = Path.Combine(folder, name);
        File.WriteAllBytes(path, input);
        return path;
    }

    public static Harness Safetensors() => new("safetensors", Seeds.Safetensors(),
        (input, folder) => OpenAndTouch(Write(folder, "model.safetensors", input)), typeof(CheckpointException));

    public static Harness ShardedIndex()
    {
        string shards = Path.Combine(Path.GetTempPath(), "moe-fuzz-shards-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(shards);
        byte[] index = Seeds.ShardedIndex(shards);
        // the shards stay; each input replaces the index next to them
        return new("sharded-index", [index], (input, _) =>
        {
            File.WriteAllBytes(Path.Combine(shards, "model.safetensors.index.json"), input);
            OpenAndTouch(shards);
        }, typeof(CheckpointException));
    }

    public static Harness TorchBin() => new("torch-bin", Seeds.TorchBins(),
        (input, folder) => OpenAndTouch(Write(folder, "pytorch_model.bin", input)), typeof(CheckpointException));

    private static Harness Image(string name, IReadOnlyList<byte[]> seeds) =>
        new(name, seeds, (input, _) => ImageDecoder.Decode(input, ImageOptions), typeof(ImageDecodingException));

    /// <summary>PNG chunks carry CRCs, which reject almost every blind mutation at the first chunk; half of the
    /// inputs get their CRCs recomputed so that mutations reach the zlib stream, filters and pixel formats.</summary>
    public static Harness Png() => new("png", Seeds.Pngs(), (input, _) =>
    {
        if (input.Length % 2 == 0) input = WithPngCrcsFixed(input);
        ImageDecoder.Decode(input, ImageOptions);
    }, typeof(ImageDecodingException));

    private static byte[] WithPngCrcsFixed(byte[] png)
    {
        var fixedPng = (byte[])png.Clone();
        int at = 8;
        while (at + 12 <= fixedPng.Length)
        {
            uint length = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(fixedPng.AsSpan(at));
            if (length > fixedPng.Length - at - 12) break;
            uint crc = Crc32(fixedPng.AsSpan(at + 4, (int)length + 4));
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(fixedPng.AsSpan(at + 8 + (int)length), crc);
            at += 12 + (int)length;
        }
        return fixedPng;
    }

    /// <summary>The CRC-32 of PNG and zip (polynomial 0xEDB88320), bit by bit: inputs are small.</summary>
    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        return ~crc;
    }
    public static Harness Jpeg() => Image("jpeg", Seeds.Images("jpeg_", ".jpg", ".jpeg"));
    public static Harness Bmp() => Image("bmp", Seeds.Images("bmp_", ".bmp"));
    public static Harness Ppm() => Image("ppm", [.. Seeds.Images("ppm_", ".ppm"), .. Seeds.Images("pgm_", ".pgm")]);

    public static Harness Tiktoken() => new("tiktoken", Seeds.Tiktoken(),
        (input, folder) => LoadAndUse(() => TokenizerLoader.FromFile(Write(folder, "qwen.tiktoken", input))), typeof(TokenizerLoadException));

    public static Harness TokenizerJson() => new("tokenizer-json", Seeds.TokenizerJsons(),
        (input, folder) => LoadAndUse(() => TokenizerLoader.FromFile(Write(folder, "tokenizer.json", input))), typeof(TokenizerLoadException));

    public static Harness SentencePieceModel() => new("tokenizer-model", Seeds.SentencePieceModel(),
        (input, folder) => LoadAndUse(() => TokenizerLoader.FromFile(Write(folder, "tokenizer.model", input))), typeof(TokenizerLoadException));

    public static Harness VocabAndMerges() => new("vocab-merges", Seeds.VocabAndMerges(), (input, folder) =>
    {
        int split = Array.IndexOf(input, (byte)0);
        Write(folder, "vocab.json", split < 0 ? input : input[..split]);
        Write(folder, "merges.txt", split < 0 ? [] : input[(split + 1)..]);
        LoadAndUse(() => TokenizerLoader.FromFolder(folder));
    }, typeof(TokenizerLoadException));

    public static Harness ConfigImport() => new("config-import", Seeds.Configs(),
        (input, _) => ConfigImporter.ImportSpec(Encoding.UTF8.GetString(input), sourcePath: "config.json"), typeof(CheckpointException));

    /// <summary>The spec parser reports problems as diagnostics and documents no exception at all: a spec it
    /// refuses is one with diagnostics and no variant model (counted as rejected through <see cref="SpecRefused"/>).</summary>
    public static Harness SpecParser() => new("spec-parser", Seeds.Specs(), (input, _) =>
    {
        var result = MoeCompiler.Generators.Parsing.SpecParser.Parse("fuzz.json", Encoding.UTF8.GetString(input));
        if (result.Variant is null && result.Diagnostics.Count() == 0) throw new InvalidOperationException("no variant and no diagnostic");
        if (result.Variant is null) throw new SpecRefused();
    }, typeof(SpecRefused));

    internal sealed class SpecRefused : Exception;
}
