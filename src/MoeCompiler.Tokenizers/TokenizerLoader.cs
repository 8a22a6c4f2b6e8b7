using System.Text.Json;
using MoeCompiler.Tokenizers.Loading;
using MoeCompiler.Tokenizers.Splitting;

namespace MoeCompiler.Tokenizers;

/// <summary>A tokenizer loaded from a model folder: the file it was built from and the configuration files read.</summary>
public sealed record FolderTokenizer(ITokenizer Tokenizer, string TokenizerFile, IReadOnlyList<string> ConfigFiles);

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

    /// <summary>Loads from a Hugging Face model folder (see <see cref="LoadFolder"/>); a file path loads that file.</summary>
    public static ITokenizer FromFolder(string path)
    {
        if (System.IO.File.Exists(path)) return FromFile(path);
        return LoadFolder(path).Tokenizer;
    }

    /// <summary>True when the folder has a file <see cref="LoadFolder"/> can build a tokenizer from.</summary>
    public static bool HasTokenizerFiles(string folder) => Directory.Exists(folder) && FindTokenizerFile(folder, tokenizerClass: null) is not null;

    /// <summary>
    /// Loads the tokenizer of a Hugging Face model folder as MoE-LLaVA and CuMo load it: AutoTokenizer.from_pretrained
    /// with use_fast=False under transformers 4.37. That means the slow tokenizer's own file comes first, in this order:
    /// tokenizer.model (LlamaTokenizer: Mistral, OpenChat), *.tiktoken (QWenTokenizer, Arcade100kTokenizer),
    /// vocab.json + merges.txt (GPT2Tokenizer, CodeGenTokenizer: Phi-2), and tokenizer.json only when the folder has
    /// none of them. Two exceptions follow transformers: a tokenizer_class ending in "Fast" makes AutoTokenizer build
    /// the fast tokenizer from tokenizer.json whatever use_fast says, and a tokenizer_class naming one of the slow
    /// classes above puts its file first. tokenizer_config.json, special_tokens_map.json and added_tokens.json add
    /// tokens and choose BOS/EOS, add_bos_token/add_eos_token and the SentencePiece legacy mode
    /// (<see cref="TokenizerFolderConfig"/>). Problems raise <see cref="TokenizerLoadException"/> naming the file.
    /// </summary>
    public static FolderTokenizer LoadFolder(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (!Directory.Exists(folder)) throw new TokenizerLoadException(folder, "no such folder");
        var config = TokenizerFolderConfig.Read(folder);
        string file = FindTokenizerFile(folder, config.TokenizerClass)
            ?? throw new TokenizerLoadException(folder, "no tokenizer files (tokenizer.model, *.tiktoken, vocab.json + merges.txt or tokenizer.json)");
        string name = Path.GetFileName(file);
        bool tiktoken = name.EndsWith(".tiktoken", StringComparison.OrdinalIgnoreCase);
        bool fast = name == "tokenizer.json" && config.NamesFastClass;

        TokenizerBase tokenizer = name switch
        {
            "tokenizer.json" => HfTokenizerJson.Load(file, config.Added),
            "tokenizer.model" => SentencePieceModelFile.Load(file, config.Added),
            "vocab.json" => (TokenizerBase)Gpt2FromFiles(file, Path.Combine(folder, "merges.txt"), config.Added),
            _ => (TokenizerBase)FromFile(file), // *.tiktoken: the special tokens are the class's own, not the config's
        };

        // The slow LlamaTokenizer's legacy flag decides whether text after a special token gets SentencePiece's "▁"
        // prefix. A fast tokenizer loaded from tokenizer.json behaves as that file says and ignores the flag.
        if (config.Legacy == false && !fast && tokenizer is SentencePieceBpeTokenizer sentencePiece)
        {
            if (sentencePiece.UnknownId < 0) throw new TokenizerLoadException(config.ConfigPath ?? file, "legacy=false needs an <unk> token, but the vocabulary has none");
            tokenizer = sentencePiece.WithLegacy(false);
        }
        if (!tiktoken) ApplySpecialTokens(tokenizer, config, file);
        // transformers 4.37 (the references' version): PreTrainedTokenizer._decode cleans up spaces unless the config
        // says otherwise, defaulting to true except LlamaTokenizer (false); Qwen's and Arcade100k's own _decode never do.
        if (!tiktoken && !config.HasOwnDecode)
            tokenizer.CleansUpTokenizationSpaces = config.CleanUpSpaces ?? tokenizer is ByteLevelBpeTokenizer;
        return new FolderTokenizer(tokenizer, file, config.FilesRead);
    }

    /// <summary>The file <see cref="LoadFolder"/> builds the tokenizer from, or null (see there for the order).</summary>
    private static string? FindTokenizerFile(string folder, string? tokenizerClass)
    {
        string json = Path.Combine(folder, "tokenizer.json");
        string model = Path.Combine(folder, "tokenizer.model");
        string vocab = Path.Combine(folder, "vocab.json");
        string? tiktoken = Directory.EnumerateFiles(folder, "*.tiktoken").OrderBy(f => f, StringComparer.Ordinal).FirstOrDefault();
        bool hasVocabAndMerges = System.IO.File.Exists(vocab) && System.IO.File.Exists(Path.Combine(folder, "merges.txt"));

        string? preferred = tokenizerClass switch
        {
            null => null,
            _ when tokenizerClass.EndsWith("Fast", StringComparison.Ordinal) => System.IO.File.Exists(json) ? json : null,
            _ when tokenizerClass.Contains("QWen", StringComparison.OrdinalIgnoreCase) || tokenizerClass.Contains("Arcade100k", StringComparison.OrdinalIgnoreCase) => tiktoken,
            _ when tokenizerClass.StartsWith("GPT2", StringComparison.Ordinal) || tokenizerClass.StartsWith("CodeGen", StringComparison.Ordinal) => hasVocabAndMerges ? vocab : null,
            _ when tokenizerClass.StartsWith("Llama", StringComparison.Ordinal) => System.IO.File.Exists(model) ? model : null,
            _ => null,
        };
        if (preferred is not null) return preferred;
        if (System.IO.File.Exists(model)) return model;
        if (tiktoken is not null) return tiktoken;
        if (hasVocabAndMerges) return vocab;
        return System.IO.File.Exists(json) ? json : null;
    }

    /// <summary>BOS, EOS and add_eos_token as the folder's config names them. Defaults are the slow classes':
    /// LlamaTokenizer adds "&lt;s&gt;" and ends with "&lt;/s&gt;"; GPT2Tokenizer/CodeGenTokenizer add no BOS unless
    /// add_bos_token is true and use "&lt;|endoftext|&gt;".</summary>
    private static void ApplySpecialTokens(TokenizerBase tokenizer, TokenizerFolderConfig config, string tokenizerFile)
    {
        bool sentencePiece = tokenizer is SentencePieceBpeTokenizer;
        if (!sentencePiece && config.AddPrefixSpace == true)
            throw new TokenizerLoadException(config.ConfigPath!, "add_prefix_space=true is not supported (the reference would put a space before every text)");

        int? Resolve(TokenizerFolderConfig.NamedToken? named, string defaultContent, string field)
        {
            string content = named?.Content ?? defaultContent;
            return tokenizer.TokenId(content)
                ?? throw new TokenizerLoadException(named?.SourceFile ?? tokenizerFile, $"{field} \"{content}\" is not a token of {tokenizerFile}");
        }

        bool addsBos = config.AddBos ?? sentencePiece;
        int? bos = addsBos ? Resolve(config.BosToken, sentencePiece ? "<s>" : "<|endoftext|>", "bos_token") : null;
        IReadOnlyList<int> eos = config.EosToken is not null ? [Resolve(config.EosToken, "", "eos_token")!.Value] : tokenizer.EosIds;
        tokenizer.SetSpecialIds(bos, eos);
        // Only LlamaTokenizer appends EOS; GPT-2/CodeGen's build_inputs_with_special_tokens ignores add_eos_token.
        if (config.AddEos == true && sentencePiece)
        {
            if (eos.Count == 0) throw new TokenizerLoadException(config.ConfigPath!, "add_eos_token=true, but no eos_token is known");
            tokenizer.AddsEos = true;
        }
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
        // GPT2Tokenizer/CodeGenTokenizer make their "<|endoftext|>" (bos, eos and unk) a special added token.
        if (!added.Any(a => a.Content == "<|endoftext|>") && vocab.TryGetValue("<|endoftext|>", out int vocabEndOfText))
            added = [.. added, new AddedToken("<|endoftext|>", vocabEndOfText, true)];
        int? endOfText = added.FirstOrDefault(a => a.Content == "<|endoftext|>")?.Id;
        return BpeVocabulary.ByteLevel(vocabPath, vocab, merges, Gpt2Splitter.Instance, added, null,
            eos ?? (endOfText is int eot ? [eot] : []), nfc: false);
    }
}
