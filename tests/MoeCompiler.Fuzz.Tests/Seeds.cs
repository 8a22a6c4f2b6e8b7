using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using MoeCompiler.Checkpoints.Tests;
using MoeCompiler.Imaging;
using MoeCompiler.Imaging.Png;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace MoeCompiler.Fuzz.Tests;

/// <summary>
/// Seed inputs. Made here by the project's own writers (SafetensorsWriter, the PNG encoder, the test projects'
/// torch-zip writers) or, where a format has no writer in the project, by small writers of the published formats
/// below; the rest are other test projects' committed fixtures (made by Debian's Python with torch/Pillow, see
/// their TestData/PROVENANCE.md), copied to Seeds/ in the output by the project file.
/// </summary>
internal static class Seeds
{
    public static string Fixture(params string[] parts) => Path.Combine([AppContext.BaseDirectory, "Seeds", .. parts]);

    private static byte[] ViaFile(Action<string> write)
    {
        string path = Path.Combine(Path.GetTempPath(), "moe-fuzz-seed-" + Guid.NewGuid().ToString("N"));
        try
        {
            write(path);
            return File.ReadAllBytes(path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    public static Dictionary<string, Tensor> SmallTensors() => new()
    {
        ["model.layers.0.mlp.gate_proj.weight"] = Tensor.FromFloats(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3),
        ["model.norm.weight"] = DTypeConversion.Convert(Tensor.FromFloats(new float[] { 1, 2, 3 }, 3), DType.BF16),
        ["model.embed.weight"] = DTypeConversion.Convert(Tensor.FromFloats(new float[] { 1, 2 }, 1, 2), DType.F16),
        ["q"] = new Tensor(new NativeStorage(6), 0, DType.I8, new[] { 2, 3 }, "q", Tensor.FromFloats(new[] { 0.5f, 2f }, 2)),
    };

    public static IReadOnlyList<byte[]> Safetensors() =>
    [
        ViaFile(p => SafetensorsWriter.Write(p, SmallTensors(), new Dictionary<string, string> { ["format"] = "pt" })),
        ViaFile(p => SafetensorsWriter.Write(p, new Dictionary<string, Tensor> { ["w"] = Tensor.FromFloats(Enumerable.Range(0, 64).Select(i => i * 0.5f).ToArray(), 8, 8) })),
    ];

    /// <summary>Shards written by SafetensorsWriter.WriteSharded into <paramref name="folder"/>; returns the index it wrote.</summary>
    public static byte[] ShardedIndex(string folder)
    {
        SafetensorsWriter.WriteSharded(folder, SmallTensors(), maxShardBytes: 24, overwrite: true);
        return File.ReadAllBytes(Path.Combine(folder, "model.safetensors.index.json"));
    }

    public static IReadOnlyList<byte[]> TorchBins()
    {
        var tensors = new[]
        {
            new TorchZipWriter.TensorRef("a", "0", 6, 0, new long[] { 2, 3 }, new long[] { 3, 1 }),
            new TorchZipWriter.TensorRef("a_t", "0", 6, 0, new long[] { 3, 2 }, new long[] { 1, 3 }),
            new TorchZipWriter.TensorRef("b", "1", 4, 1, new long[] { 2 }, new long[] { 1 }),
        };
        var storages = new[]
        {
            new TorchZipWriter.Storage("0", 6, TorchZipWriter.Floats(6, i => i)),
            new TorchZipWriter.Storage("1", 4, TorchZipWriter.Floats(4, i => -i)),
        };
        var deflated = HostileZip.DeflatedPrefixThenZeros(BitConverter.GetBytes(1.5f), 64);
        return
        [
            File.ReadAllBytes(Fixture("checkpoints", "pytorch_model.bin")), // torch 1.13 torch.save output
            ViaFile(p => TorchZipWriter.Write(p, "archive", TorchZipWriter.Pickle(tensors), storages)),
            ViaFile(p => HostileZip.WriteTorchBin(p, [(new TorchZipWriter.TensorRef("d", "0", 16, 0, new long[] { 4, 4 }, new long[] { 4, 1 }), deflated)])),
        ];
    }

    public static IReadOnlyList<byte[]> Images(string prefix, params string[] extensions)
    {
        var files = Directory.GetFiles(Fixture("images"))
            .Where(f => Path.GetFileName(f).StartsWith(prefix, StringComparison.Ordinal) && extensions.Contains(Path.GetExtension(f)))
            .Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToList();
        if (files.Count == 0) throw new InvalidOperationException($"no {prefix} seed images");
        return files;
    }

    public static IReadOnlyList<byte[]> Pngs()
    {
        var pixels = Enumerable.Range(0, 5 * 3 * 3).Select(i => (byte)(i * 37)).ToArray();
        var image = new RgbImage(5, 3, pixels);
        return [PngEncoder.Encode(image), PngEncoder.Encode(new RgbImage(1, 1, [9, 8, 7]), System.IO.Compression.CompressionLevel.NoCompression), .. Images("png_", ".png")];
    }

    // ---- tokenizers: tiny vocabularies in each file format, so that one input takes about a millisecond ----

    /// <summary>GPT-2's bytes_to_unicode: the byte-level alphabet of byte-level BPE files.</summary>
    public static char[] ByteLevelAlphabet()
    {
        var bytes = new List<int>();
        for (int b = '!'; b <= '~'; b++) bytes.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) bytes.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) bytes.Add(b);
        var chars = new char[256];
        foreach (int b in bytes) chars[b] = (char)b;
        int n = 0;
        for (int b = 0; b < 256; b++) if (!bytes.Contains(b)) chars[b] = (char)(256 + n++);
        return chars;
    }

    private static Dictionary<string, int> ByteLevelVocab()
    {
        var alphabet = ByteLevelAlphabet();
        var vocab = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++) vocab[alphabet[b].ToString()] = b;
        vocab["he"] = 256; vocab["ll"] = 257; vocab["hell"] = 258; vocab["hello"] = 259; vocab["Ġw"] = 260;
        return vocab;
    }

    private static readonly string[] ByteLevelMerges = ["h e", "l l", "he ll", "hell o", "Ġ w"];

    public static IReadOnlyList<byte[]> TokenizerJsons()
    {
        var byteLevel = new Dictionary<string, object?>
        {
            ["added_tokens"] = new[] { new Dictionary<string, object> { ["id"] = 261, ["content"] = "<|endoftext|>", ["special"] = true } },
            ["normalizer"] = new Dictionary<string, object> { ["type"] = "NFC" },
            ["pre_tokenizer"] = new Dictionary<string, object>
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new object[]
                {
                    new Dictionary<string, object> { ["type"] = "Split", ["pattern"] = new Dictionary<string, object> { ["Regex"] = @"\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+" }, ["behavior"] = "Isolated" },
                    new Dictionary<string, object> { ["type"] = "ByteLevel", ["add_prefix_space"] = false },
                },
            },
            ["model"] = new Dictionary<string, object> { ["type"] = "BPE", ["vocab"] = ByteLevelVocab(), ["merges"] = ByteLevelMerges },
        };
        var spVocab = new Dictionary<string, int> { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++) spVocab[$"<0x{b:X2}>"] = 3 + b;
        foreach (var piece in new[] { "▁", "h", "e", "l", "o", "he", "ll", "▁he", "▁hell" }) spVocab[piece] = spVocab.Count;
        var sentencePiece = new Dictionary<string, object?>
        {
            ["normalizer"] = new Dictionary<string, object>
            {
                ["type"] = "Sequence",
                ["normalizers"] = new object[]
                {
                    new Dictionary<string, object> { ["type"] = "Prepend", ["prepend"] = "▁" },
                    new Dictionary<string, object> { ["type"] = "Replace", ["pattern"] = new Dictionary<string, object> { ["String"] = " " }, ["content"] = "▁" },
                },
            },
            ["model"] = new Dictionary<string, object>
            {
                ["type"] = "BPE", ["vocab"] = spVocab, ["merges"] = new[] { new[] { "h", "e" }, new[] { "l", "l" }, new[] { "▁", "he" }, new[] { "▁he", "ll" } },
                ["byte_fallback"] = true, ["unk_token"] = "<unk>",
            },
        };
        return [JsonSerializer.SerializeToUtf8Bytes(byteLevel), JsonSerializer.SerializeToUtf8Bytes(sentencePiece)];
    }

    /// <summary>vocab.json and merges.txt joined by a NUL byte (the harness splits them again).</summary>
    public static IReadOnlyList<byte[]> VocabAndMerges() =>
    [
        [.. JsonSerializer.SerializeToUtf8Bytes(ByteLevelVocab()), 0, .. Encoding.UTF8.GetBytes("#version: 0.2\n" + string.Join("\n", ByteLevelMerges) + "\n")],
    ];

    /// <summary>tiktoken's format: "base64(token bytes) rank" a line, the 256 single bytes first.</summary>
    public static IReadOnlyList<byte[]> Tiktoken()
    {
        var lines = new List<string>();
        for (int b = 0; b < 256; b++) lines.Add(Convert.ToBase64String([(byte)b]) + " " + b);
        foreach (var token in new[] { "he", "ll", "hell", "hello", " w", " wo" }) lines.Add(Convert.ToBase64String(Encoding.UTF8.GetBytes(token)) + " " + lines.Count);
        return [Encoding.ASCII.GetBytes(string.Join("\n", lines) + "\n")];
    }

    /// <summary>A SentencePiece ModelProto (sentencepiece_model.proto): BPE with byte fallback and a few merges.</summary>
    public static IReadOnlyList<byte[]> SentencePieceModel()
    {
        var model = new MemoryStream();
        void Varint(Stream s, ulong v) { while (v >= 0x80) { s.WriteByte((byte)(v | 0x80)); v >>= 7; } s.WriteByte((byte)v); }
        void Bytes(Stream s, int field, byte[] data) { Varint(s, (ulong)(field << 3 | 2)); Varint(s, (ulong)data.Length); s.Write(data); }
        void Piece(string text, float score, int type)
        {
            var p = new MemoryStream();
            Bytes(p, 1, Encoding.UTF8.GetBytes(text));
            Varint(p, 2 << 3 | 5); Span<byte> f = stackalloc byte[4]; BinaryPrimitives.WriteSingleLittleEndian(f, score); p.Write(f);
            Varint(p, 3 << 3); Varint(p, (ulong)type);
            Bytes(model, 1, p.ToArray());
        }
        Piece("<unk>", 0, 2); Piece("<s>", 0, 3); Piece("</s>", 0, 3);
        for (int b = 0; b < 256; b++) Piece($"<0x{b:X2}>", 0, 6);
        float score = -1;
        foreach (var piece in new[] { "▁", "h", "e", "l", "o", "he", "ll", "▁he", "▁hell" }) Piece(piece, score--, 1);
        var trainer = new MemoryStream();
        Varint(trainer, 3 << 3); Varint(trainer, 2);   // model_type BPE
        Varint(trainer, 35 << 3); Varint(trainer, 1);  // byte_fallback
        Varint(trainer, 40 << 3); Varint(trainer, 0);  // unk_id
        Varint(trainer, 41 << 3); Varint(trainer, 1);  // bos_id
        Varint(trainer, 42 << 3); Varint(trainer, 2);  // eos_id
        Bytes(model, 2, trainer.ToArray());
        var normalizer = new MemoryStream();
        Varint(normalizer, 3 << 3); Varint(normalizer, 1); // add_dummy_prefix
        Varint(normalizer, 4 << 3); Varint(normalizer, 0); // remove_extra_whitespaces
        Bytes(model, 3, normalizer.ToArray());
        return [model.ToArray()];
    }

    public static IReadOnlyList<byte[]> Configs() =>
        Directory.GetFiles(Fixture("checkpoints"), "*.json").Where(f => !f.EndsWith(".index.json", StringComparison.Ordinal) && !f.EndsWith(".spec.json", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToList();

    public static IReadOnlyList<byte[]> Specs() =>
        Directory.GetFiles(Fixture("specs"), "*.json").Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToList();
}
