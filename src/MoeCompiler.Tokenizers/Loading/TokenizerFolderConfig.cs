using System.Globalization;
using System.Text.Json;

namespace MoeCompiler.Tokenizers.Loading;

/// <summary>What a Hugging Face model folder's tokenizer_config.json, special_tokens_map.json and added_tokens.json
/// say about tokenization, read with transformers 4.37's rules (PreTrainedTokenizerBase._from_pretrained, the
/// version MoE-LLaVA and CuMo pin):
/// <list type="bullet">
/// <item>tokenizer_config.json gives the constructor arguments: add_bos_token, add_eos_token, legacy,
/// bos/eos/unk/pad_token (a string or an AddedToken object {"content": ...}), tokenizer_class,
/// clean_up_tokenization_spaces, added_tokens_decoder.</item>
/// <item>When it has added_tokens_decoder (every config saved by transformers 4.34 or later), that table is the
/// whole truth about added tokens: special_tokens_map.json and added_tokens.json are not read.</item>
/// <item>Otherwise (an older folder) special_tokens_map.json overrides the config's special tokens, and each
/// entry of added_tokens.json becomes an added token, special when its string is one of the named special tokens
/// (bos, eos, unk, pad, additional_special_tokens).</item>
/// </list>
/// Fields of the wrong type are errors naming the file and the field, never silently ignored.</summary>
internal sealed class TokenizerFolderConfig
{
    public const string ConfigFileName = "tokenizer_config.json";
    public const string SpecialTokensMapFileName = "special_tokens_map.json";
    public const string AddedTokensFileName = "added_tokens.json";

    /// <summary>A special token's string and the file that named it.</summary>
    public sealed record NamedToken(string Content, string SourceFile);

    public List<AddedToken> Added { get; } = [];
    public List<string> FilesRead { get; } = [];
    public bool? AddBos { get; private set; }
    public bool? AddEos { get; private set; }
    public bool? Legacy { get; private set; }
    public bool? AddPrefixSpace { get; private set; }
    public bool? CleanUpSpaces { get; private set; }
    public string? TokenizerClass { get; private set; }
    public NamedToken? BosToken { get; private set; }
    public NamedToken? EosToken { get; private set; }
    public NamedToken? UnkToken { get; private set; }
    public NamedToken? PadToken { get; private set; }
    public List<string> AdditionalSpecialTokens { get; } = [];
    public string? ConfigPath { get; private set; }

    /// <summary>True when tokenizer_config.json names a fast class ("...Fast"): AutoTokenizer then builds the fast
    /// tokenizer from tokenizer.json even with use_fast=False (transformers 4.37, tokenization_auto.py).</summary>
    public bool NamesFastClass => TokenizerClass is { } c && c.EndsWith("Fast", StringComparison.Ordinal);

    /// <summary>QWenTokenizer and Arcade100kTokenizer override _decode and never clean up spaces.</summary>
    public bool HasOwnDecode => TokenizerClass is { } c && (c.Contains("QWen", StringComparison.OrdinalIgnoreCase) || c.Contains("Arcade100k", StringComparison.OrdinalIgnoreCase));

    public static TokenizerFolderConfig Read(string folder)
    {
        var config = new TokenizerFolderConfig();
        bool hasDecoderTable = false;
        string configPath = Path.Combine(folder, ConfigFileName);
        if (File.Exists(configPath))
        {
            config.ConfigPath = configPath;
            config.FilesRead.Add(configPath);
            using JsonDocument doc = ReadJson(configPath);
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new TokenizerLoadException(configPath, "not a JSON object");
            hasDecoderTable = config.ReadAddedTokensDecoder(configPath, root);
            config.AddBos = Bool(configPath, root, "add_bos_token");
            config.AddEos = Bool(configPath, root, "add_eos_token");
            config.Legacy = Bool(configPath, root, "legacy");
            config.AddPrefixSpace = Bool(configPath, root, "add_prefix_space");
            config.CleanUpSpaces = Bool(configPath, root, "clean_up_tokenization_spaces");
            config.TokenizerClass = String(configPath, root, "tokenizer_class");
            config.ReadSpecialTokens(configPath, root);
        }
        if (hasDecoderTable) return config;

        string mapPath = Path.Combine(folder, SpecialTokensMapFileName);
        if (File.Exists(mapPath))
        {
            config.FilesRead.Add(mapPath);
            using JsonDocument doc = ReadJson(mapPath);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new TokenizerLoadException(mapPath, "not a JSON object");
            config.ReadSpecialTokens(mapPath, doc.RootElement);
        }

        string addedPath = Path.Combine(folder, AddedTokensFileName);
        if (File.Exists(addedPath))
        {
            config.FilesRead.Add(addedPath);
            using JsonDocument doc = ReadJson(addedPath);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new TokenizerLoadException(addedPath, "not a JSON object of \"token\": id");
            var special = config.SpecialTokenStrings();
            foreach (JsonProperty p in doc.RootElement.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0)
                    throw new TokenizerLoadException(addedPath, $"\"{p.Name}\" has no valid id (a non-negative integer)");
                if (p.Name.Length == 0) throw new TokenizerLoadException(addedPath, "an added token is empty");
                config.Added.RemoveAll(a => a.Id == id);
                config.Added.Add(new AddedToken(p.Name, id, special.Contains(p.Name)));
            }
        }
        return config;
    }

    private HashSet<string> SpecialTokenStrings()
    {
        var set = new HashSet<string>(AdditionalSpecialTokens, StringComparer.Ordinal);
        foreach (NamedToken? t in (NamedToken?[])[BosToken, EosToken, UnkToken, PadToken])
            if (t is not null) set.Add(t.Content);
        return set;
    }

    private bool ReadAddedTokensDecoder(string path, JsonElement root)
    {
        if (!root.TryGetProperty("added_tokens_decoder", out JsonElement decoder) || decoder.ValueKind == JsonValueKind.Null) return false;
        if (decoder.ValueKind != JsonValueKind.Object)
            throw new TokenizerLoadException(path, "added_tokens_decoder is not an object of \"id\": {\"content\": ...}");
        foreach (JsonProperty p in decoder.EnumerateObject())
        {
            string field = $"added_tokens_decoder[\"{p.Name}\"]";
            if (!int.TryParse(p.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int id))
                throw new TokenizerLoadException(path, $"{field}: the key is not a token id");
            if (p.Value.ValueKind != JsonValueKind.Object || !p.Value.TryGetProperty("content", out JsonElement c) || c.ValueKind != JsonValueKind.String || c.GetString()!.Length == 0)
                throw new TokenizerLoadException(path, $"{field} has no \"content\" string");
            // AddedToken(**token): a missing "special" is false.
            bool special = Bool(path, p.Value, "special", field) ?? false;
            // lstrip/rstrip/single_word change how the text around the token is split; no reference tokenizer of
            // these models sets them, and ignoring them would give other ids than the reference: refuse.
            foreach (string flag in (string[])["lstrip", "rstrip", "single_word"])
                if (Bool(path, p.Value, flag, field) == true)
                    throw new TokenizerLoadException(path, $"{field} (\"{c.GetString()}\") sets {flag}=true, which is not supported");
            Added.RemoveAll(a => a.Id == id);
            Added.Add(new AddedToken(c.GetString()!, id, special));
        }
        return true;
    }

    private void ReadSpecialTokens(string path, JsonElement root)
    {
        BosToken = Token(path, root, "bos_token") ?? BosToken;
        EosToken = Token(path, root, "eos_token") ?? EosToken;
        UnkToken = Token(path, root, "unk_token") ?? UnkToken;
        PadToken = Token(path, root, "pad_token") ?? PadToken;
        if (root.TryGetProperty("additional_special_tokens", out JsonElement extra) && extra.ValueKind != JsonValueKind.Null)
        {
            if (extra.ValueKind != JsonValueKind.Array) throw new TokenizerLoadException(path, "additional_special_tokens is not a list");
            foreach (JsonElement e in extra.EnumerateArray())
            {
                string content = TokenContent(path, e, "additional_special_tokens")
                    ?? throw new TokenizerLoadException(path, "additional_special_tokens holds a null");
                if (!AdditionalSpecialTokens.Contains(content)) AdditionalSpecialTokens.Add(content);
            }
        }
    }

    private static NamedToken? Token(string path, JsonElement root, string name) =>
        root.TryGetProperty(name, out JsonElement e) && TokenContent(path, e, name) is { } content ? new NamedToken(content, path) : null;

    /// <summary>A token given as a string or as a serialised AddedToken ({"__type": "AddedToken", "content": ...}).</summary>
    private static string? TokenContent(string path, JsonElement e, string field)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Null: return null;
            case JsonValueKind.String when e.GetString()!.Length > 0: return e.GetString();
            case JsonValueKind.Object when e.TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String && c.GetString()!.Length > 0:
                return c.GetString();
            default: throw new TokenizerLoadException(path, $"{field} is neither a token string nor an object with a \"content\" string");
        }
    }

    private static bool? Bool(string path, JsonElement root, string name, string? owner = null)
    {
        if (!root.TryGetProperty(name, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return null;
        return e.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new TokenizerLoadException(path, $"{(owner is null ? "" : owner + ".")}{name} is not true or false"),
        };
    }

    private static string? String(string path, JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return null;
        return e.ValueKind == JsonValueKind.String ? e.GetString() : throw new TokenizerLoadException(path, $"{name} is not a string");
    }

    private static JsonDocument ReadJson(string path)
    {
        // Only a regular file of bounded size is read (a FIFO or /dev/zero named tokenizer_config.json must not hang).
        byte[] bytes = MoeCompiler.IO.RegularFile.ReadAllBytes(path, TokenizerFiles.MaxJsonBytes, (problem, inner) => new TokenizerLoadException(path, problem, inner));
        try
        {
            return JsonDocument.Parse(MoeCompiler.IO.RegularFile.WithoutByteOrderMark(bytes));
        }
        catch (JsonException e)
        {
            throw new TokenizerLoadException(path, "cannot read: " + e.Message, e);
        }
    }
}
