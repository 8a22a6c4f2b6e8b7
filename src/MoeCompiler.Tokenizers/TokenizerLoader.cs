using System.Text.Json;
using MoeCompiler.Tokenizers.Loading;
using MoeCompiler.Tokenizers.Splitting;

namespace MoeCompiler.Tokenizers;

/// <summary>Loads the tokenizer of a base model from a Hugging Face model folder or by kind from the data
/// files shipped with this library.</summary>
public static class TokenizerLoader
{
    /// <summary>Kinds accepted by <see cref="ForKind(string, string)"/>.</summary>
    public static IReadOnlyList<string> Kinds { get; } = ["arcade100k", "qwen", "gpt2", "phi2", "sentencepiece", "openchat"];

    /// <summary>The folder the shipped vocabularies are copied to, next to the assembly.</summary>
    public static string DefaultDataDirectory => Path.Combine(AppContext.BaseDirectory, "tokenizers");

    public static ITokenizer ForKind(string kind) => ForKind(kind, DefaultDataDirectory);

    public static ITokenizer ForKind(string kind, string dataDirectory)
    {
        ArgumentNullException.ThrowIfNull(kind);
        string File(string name)
        {
            string path = Path.Combine(dataDirectory, name);
            if (!System.IO.File.Exists(path)) throw new TokenizerLoadException(path, $"tokenizer data file for kind \"{kind}\" not found");
            return path;
        }
        return kind.ToLowerInvariant() switch
        {
            "arcade100k" or "stablelm" => TiktokenFile.Build(File("cl100k_base.tiktoken"), SpecialTokens.Arcade100k(), null, [SpecialTokens.Arcade100kEndOfText], SpecialTokens.Arcade100kVocabSize),
            "qwen" => TiktokenFile.Build(File("qwen.tiktoken"), SpecialTokens.Qwen(), null, [SpecialTokens.QwenEndOfText], SpecialTokens.QwenVocabSize),
            "gpt2" => Gpt2FromFiles(File("gpt2-vocab.json"), File("gpt2-merges.txt"), [new AddedToken("<|endoftext|>", 50256, true)]),
            "phi2" or "phi" => HfTokenizerJson.Load(File("phi2-tokenizer.json")),
            "sentencepiece" or "mistral" => HfTokenizerJson.Load(File("mistral-tokenizer.json")),
            "openchat" => HfTokenizerJson.Load(File("mistral-tokenizer.json"), SpecialTokens.OpenChatAdded(), eosOverride: [SpecialTokens.OpenChatEndOfTurn]),
            _ => throw new ArgumentException($"unknown tokenizer kind \"{kind}\"; expected one of: {string.Join(", ", Kinds)}", nameof(kind)),
        };
    }

    /// <summary>Loads from a Hugging Face model folder, using whichever files it has, in this order:
    /// tokenizer.json, *.tiktoken (qwen / arcade100k), tokenizer.model, vocab.json + merges.txt.
    /// tokenizer_config.json / added_tokens.json add tokens and pick BOS/EOS as the reference does.</summary>
    public static ITokenizer FromFolder(string path)
    {
        if (System.IO.File.Exists(path)) return FromFile(path);
        if (!Directory.Exists(path)) throw new TokenizerLoadException(path, "no such folder");
        var config = FolderConfig.Read(path);

        ITokenizer tokenizer = LoadFolderFiles(path, config);
        if (tokenizer is TokenizerBase loaded && !IsTiktoken(path) && !config.HasOwnDecode)
            loaded.CleansUpTokenizationSpaces = config.CleanUpSpaces ?? loaded is ByteLevelBpeTokenizer;
        // MoE-LLaVA and CuMo load the slow tokenizer (use_fast=False), whose legacy flag decides whether text after
        // a special token gets SentencePiece's "▁" prefix.
        if (config.Legacy == false && tokenizer is SentencePieceBpeTokenizer sentencePiece)
        {
            if (sentencePiece.UnknownId < 0) throw new TokenizerLoadException(path, "tokenizer_config.json sets legacy=false, which needs an <unk> token, but the vocabulary has none");
            return sentencePiece.WithLegacy(false);
        }
        return tokenizer;
    }

    // transformers 4.37 (the references' version): PreTrainedTokenizer._decode cleans up spaces unless the config says
    // otherwise, defaulting to true except LlamaTokenizer (false); Qwen's and Arcade100k's own _decode never do.
    private static bool IsTiktoken(string folder) =>
        !System.IO.File.Exists(Path.Combine(folder, "tokenizer.json")) && Directory.EnumerateFiles(folder, "*.tiktoken").Any();

    private static ITokenizer LoadFolderFiles(string path, FolderConfig config)
    {
        string json = Path.Combine(path, "tokenizer.json");
        if (System.IO.File.Exists(json))
            return HfTokenizerJson.Load(json, config.Added, config.AddBos, config.BosToken, config.EosIds);

        string? tiktoken = Directory.EnumerateFiles(path, "*.tiktoken").OrderBy(f => f, StringComparer.Ordinal).FirstOrDefault();
        if (tiktoken is not null) return FromFile(tiktoken);

        string model = Path.Combine(path, "tokenizer.model");
        if (System.IO.File.Exists(model)) return SentencePieceModelFile.Load(model, config.Added, config.EosIds, addBos: config.AddBos != false);

        string vocab = Path.Combine(path, "vocab.json"), merges = Path.Combine(path, "merges.txt");
        if (System.IO.File.Exists(vocab) && System.IO.File.Exists(merges))
        {
            var added = config.Added.ToList();
            if (!added.Any(a => a.Content == "<|endoftext|>")) added.Add(new AddedToken("<|endoftext|>", 50256, true));
            return Gpt2FromFiles(vocab, merges, added, config.EosIds);
        }
        throw new TokenizerLoadException(path, "no tokenizer files (tokenizer.json, *.tiktoken, tokenizer.model or vocab.json + merges.txt)");
    }

    /// <summary>Loads one tokenizer file, its kind told by its name and extension.</summary>
    public static ITokenizer FromFile(string file)
    {
        string name = Path.GetFileName(file).ToLowerInvariant();
        if (name.EndsWith(".tiktoken", StringComparison.Ordinal))
        {
            if (name.Contains("qwen", StringComparison.Ordinal))
                return TiktokenFile.Build(file, SpecialTokens.Qwen(), null, [SpecialTokens.QwenEndOfText], SpecialTokens.QwenVocabSize);
            if (name.Contains("arcade100k", StringComparison.Ordinal) || name.Contains("cl100k", StringComparison.Ordinal))
                return TiktokenFile.Build(file, SpecialTokens.Arcade100k(), null, [SpecialTokens.Arcade100kEndOfText], SpecialTokens.Arcade100kVocabSize);
            throw new TokenizerLoadException(file, "unknown tiktoken vocabulary (expected qwen.tiktoken or arcade100k.tiktoken): its special tokens are not known");
        }
        if (name.EndsWith(".json", StringComparison.Ordinal)) return HfTokenizerJson.Load(file);
        if (name.EndsWith(".model", StringComparison.Ordinal)) return SentencePieceModelFile.Load(file);
        throw new TokenizerLoadException(file, "unrecognised tokenizer file type");
    }

    internal static ITokenizer Gpt2FromFiles(string vocabPath, string mergesPath, IReadOnlyList<AddedToken> added, IReadOnlyList<int>? eos = null)
    {
        Dictionary<string, int> vocab;
        byte[] vocabBytes = MoeCompiler.IO.RegularFile.ReadAllBytes(vocabPath, TokenizerFiles.MaxJsonBytes, (problem, inner) => new TokenizerLoadException(vocabPath, problem, inner));
        try
        {
            vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(MoeCompiler.IO.RegularFile.WithoutByteOrderMark(vocabBytes).Span) ?? throw new TokenizerLoadException(vocabPath, "empty vocabulary");
        }
        catch (JsonException e)
        { throw new TokenizerLoadException(vocabPath, "cannot read vocab.json: " + e.Message, e); }

        var merges = new List<(string, string)>();
        string[] lines = TokenizerFiles.ReadLines(mergesPath, TokenizerFiles.MaxVocabularyBytes);
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i];
            if (line.Length == 0 || (i == 0 && line.StartsWith("#version", StringComparison.Ordinal))) continue;
            int space = line.Length < 2 ? -1 : line.IndexOf(' ', 1);
            if (space < 0 || space == line.Length - 1) throw new TokenizerLoadException(mergesPath, $"line {i + 1} is not \"left right\"");
            merges.Add((line[..space], line[(space + 1)..]));
        }
        int? endOfText = added.FirstOrDefault(a => a.Content == "<|endoftext|>")?.Id;
        return BpeVocabulary.ByteLevel(vocabPath, vocab, merges, Gpt2Splitter.Instance, added, null,
            eos ?? (endOfText is int eot ? [eot] : []), nfc: false);
    }

    /// <summary>The parts of tokenizer_config.json / added_tokens.json that change tokenization.</summary>
    private sealed class FolderConfig
    {
        public List<AddedToken> Added { get; } = [];
        public bool? AddBos { get; private set; }
        public bool? Legacy { get; private set; }
        public bool? CleanUpSpaces { get; private set; }
        public string? TokenizerClass { get; private set; }
        /// <summary>QWenTokenizer and Arcade100kTokenizer override _decode and never clean up spaces.</summary>
        public bool HasOwnDecode => TokenizerClass is { } c && (c.Contains("QWen", StringComparison.OrdinalIgnoreCase) || c.Contains("Arcade100k", StringComparison.OrdinalIgnoreCase));
        public string? BosToken { get; private set; }
        public string? EosToken { get; private set; }
        public IReadOnlyList<int>? EosIds => EosToken is not null && Added.FirstOrDefault(a => a.Content == EosToken) is { } t ? [t.Id] : null;

        public static FolderConfig Read(string folder)
        {
            var config = new FolderConfig();
            string added = Path.Combine(folder, "added_tokens.json");
            if (System.IO.File.Exists(added))
            {
                foreach (var (content, id) in ReadJson<Dictionary<string, int>>(added) ?? [])
                    config.Added.Add(new AddedToken(content, id, true));
            }
            string configPath = Path.Combine(folder, "tokenizer_config.json");
            if (!System.IO.File.Exists(configPath)) return config;
            using JsonDocument doc = ReadJson<JsonDocument>(configPath)!;
            JsonElement root = doc.RootElement;
            if (root.TryGetProperty("added_tokens_decoder", out JsonElement decoder) && decoder.ValueKind == JsonValueKind.Object)
            {
                foreach (JsonProperty p in decoder.EnumerateObject())
                {
                    if (!int.TryParse(p.Name, System.Globalization.CultureInfo.InvariantCulture, out int id)) continue;
                    string? content = p.Value.TryGetProperty("content", out JsonElement c) ? c.GetString() : null;
                    bool special = !p.Value.TryGetProperty("special", out JsonElement s) || s.ValueKind != JsonValueKind.False;
                    if (content is not null && !config.Added.Any(a => a.Id == id)) config.Added.Add(new AddedToken(content, id, special));
                }
            }
            if (root.TryGetProperty("add_bos_token", out JsonElement addBos) && addBos.ValueKind is JsonValueKind.True or JsonValueKind.False)
                config.AddBos = addBos.ValueKind == JsonValueKind.True;
            if (root.TryGetProperty("legacy", out JsonElement legacy) && legacy.ValueKind is JsonValueKind.True or JsonValueKind.False)
                config.Legacy = legacy.ValueKind == JsonValueKind.True;
            if (root.TryGetProperty("clean_up_tokenization_spaces", out JsonElement cleanUp) && cleanUp.ValueKind is JsonValueKind.True or JsonValueKind.False)
                config.CleanUpSpaces = cleanUp.ValueKind == JsonValueKind.True;
            config.TokenizerClass = TokenString(root, "tokenizer_class");
            config.BosToken = TokenString(root, "bos_token");
            config.EosToken = TokenString(root, "eos_token");
            return config;
        }

        private static string? TokenString(JsonElement root, string name) =>
            !root.TryGetProperty(name, out JsonElement e) ? null
            : e.ValueKind == JsonValueKind.String ? e.GetString()
            : e.ValueKind == JsonValueKind.Object && e.TryGetProperty("content", out JsonElement c) ? c.GetString() : null;

        private static T? ReadJson<T>(string path)
        {
            byte[] bytes = MoeCompiler.IO.RegularFile.ReadAllBytes(path, TokenizerFiles.MaxJsonBytes, (problem, inner) => new TokenizerLoadException(path, problem, inner));
            try
            {
                return typeof(T) == typeof(JsonDocument) ? (T)(object)JsonDocument.Parse(MoeCompiler.IO.RegularFile.WithoutByteOrderMark(bytes)) : JsonSerializer.Deserialize<T>(MoeCompiler.IO.RegularFile.WithoutByteOrderMark(bytes).Span);
            }
            catch (JsonException e)
            { throw new TokenizerLoadException(path, "cannot read: " + e.Message, e); }
        }
    }
}
