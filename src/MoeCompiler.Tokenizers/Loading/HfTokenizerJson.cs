using System.Text.Json;
using MoeCompiler.Tokenizers.Splitting;

namespace MoeCompiler.Tokenizers.Loading;

/// <summary>Loads a Hugging Face tokenizer.json whose model is BPE: byte-level (GPT-2, Phi-2, Qwen2-style with a
/// Split regex) or SentencePiece-style (Prepend/Replace "▁" normalizer or Metaspace, byte fallback).</summary>
internal static class HfTokenizerJson
{
    /// <param name="addBos">tokenizer_config.json's add_bos_token if present: byte-level tokenizers add no BOS unless
    /// it is true (GPT-2 style); SentencePiece-style ones add one unless it is false (Llama style).</param>
    public static TokenizerBase Load(string path, IReadOnlyList<AddedToken>? extraAdded = null, bool? addBos = null, string? bosToken = null, IReadOnlyList<int>? eosOverride = null)
    {
        JsonDocument doc;
        byte[] bytes = MoeCompiler.IO.RegularFile.ReadAllBytes(path, TokenizerFiles.MaxJsonBytes, (problem, inner) => new TokenizerLoadException(path, problem, inner));
        try
        {
            doc = JsonDocument.Parse(MoeCompiler.IO.RegularFile.WithoutByteOrderMark(bytes), new JsonDocumentOptions { AllowTrailingCommas = true, MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new TokenizerLoadException(path, "cannot read tokenizer.json: " + e.Message, e);
        }
        using (doc)
        {
            try { return Build(path, doc.RootElement, extraAdded, addBos, bosToken, eosOverride); }
            catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException or FormatException)
            { throw new TokenizerLoadException(path, "unexpected tokenizer.json structure: " + e.Message, e); }
        }
    }

    private static TokenizerBase Build(string path, JsonElement root, IReadOnlyList<AddedToken>? extraAdded, bool? addBos, string? bosToken, IReadOnlyList<int>? eosOverride)
    {
        if (!root.TryGetProperty("model", out JsonElement model) || model.ValueKind != JsonValueKind.Object)
            throw new TokenizerLoadException(path, "no \"model\" object");
        string modelType = model.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "BPE";
        if (modelType != "BPE") throw new TokenizerLoadException(path, $"model type \"{modelType}\" is not supported (only BPE)");

        var vocab = new Dictionary<string, int>();
        foreach (JsonProperty entry in model.GetProperty("vocab").EnumerateObject()) vocab[entry.Name] = entry.Value.GetInt32();
        var merges = new List<(string, string)>();
        if (model.TryGetProperty("merges", out JsonElement mergeList))
        {
            foreach (JsonElement merge in mergeList.EnumerateArray())
            {
                if (merge.ValueKind == JsonValueKind.Array)
                {
                    if (merge.GetArrayLength() != 2) throw new TokenizerLoadException(path, $"merge {merges.Count} is an array of {merge.GetArrayLength()} items, not a [left, right] pair");
                    string left = merge[0].GetString() ?? throw new FormatException("null merge"), right = merge[1].GetString() ?? throw new FormatException("null merge");
                    if (left.Length == 0 || right.Length == 0) throw new TokenizerLoadException(path, $"merge {merges.Count} has an empty token");
                    merges.Add((left, right));
                    continue;
                }
                string text = merge.GetString() ?? throw new FormatException("null merge");
                int space = text.Length < 2 ? -1 : text.IndexOf(' ', 1);
                if (space < 0 || space == text.Length - 1) throw new TokenizerLoadException(path, $"merge {merges.Count} \"{text}\" is not \"left right\"");
                merges.Add((text[..space], text[(space + 1)..]));
            }
        }

        var added = new List<AddedToken>();
        if (root.TryGetProperty("added_tokens", out JsonElement addedList) && addedList.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement a in addedList.EnumerateArray())
            {
                bool special = a.TryGetProperty("special", out JsonElement s) && s.ValueKind == JsonValueKind.True;
                string content = a.GetProperty("content").GetString() ?? throw new FormatException("an added token has no content");
                if (content.Length == 0) throw new FormatException("an added token is empty");
                added.Add(new AddedToken(content, a.GetProperty("id").GetInt32(), special));
            }
        }
        if (extraAdded is not null)
        {
            foreach (AddedToken extra in extraAdded)
                if (!added.Any(a => a.Id == extra.Id)) added.Add(extra);
        }

        JsonElement pre = root.TryGetProperty("pre_tokenizer", out JsonElement p) ? p : default;
        JsonElement normalizer = root.TryGetProperty("normalizer", out JsonElement n) ? n : default;
        var preParts = Flatten(pre, "pretokenizers").ToList();
        var normParts = Flatten(normalizer, "normalizers").ToList();
        bool nfc = normParts.Any(x => TypeOf(x) == "NFC");

        int? IdOf(string token) => added.FirstOrDefault(a => a.Content == token)?.Id ?? (vocab.TryGetValue(token, out int id) ? id : null);

        if (preParts.Any(x => TypeOf(x) == "ByteLevel"))
        {
            JsonElement split = preParts.FirstOrDefault(x => TypeOf(x) == "Split");
            PieceSplitter splitter;
            if (split.ValueKind == JsonValueKind.Object && split.TryGetProperty("pattern", out JsonElement pattern) && pattern.ValueKind == JsonValueKind.Object
                && pattern.TryGetProperty("Regex", out JsonElement regex))
                splitter = PieceSplitter.ForPattern(
                    regex.ValueKind == JsonValueKind.String ? regex.GetString()! : throw new TokenizerLoadException(path, $"the Split pattern's \"Regex\" is {regex.ValueKind}, not a string"),
                    path);
            else
                splitter = Gpt2Splitter.Instance;
            int? eos = IdOf("<|endoftext|>");
            int? byteLevelBos = addBos == true ? IdOf(bosToken ?? "<|endoftext|>") : null;
            return BpeVocabulary.ByteLevel(path, vocab, merges, splitter, added, byteLevelBos, eosOverride ?? (eos is int e ? [e] : []), nfc);
        }

        bool prepend = normParts.Any(x => TypeOf(x) == "Prepend") || preParts.Any(x => TypeOf(x) == "Metaspace");
        bool byteFallback = model.TryGetProperty("byte_fallback", out JsonElement bf) && bf.ValueKind == JsonValueKind.True;
        if (prepend || byteFallback)
        {
            string? unk = model.TryGetProperty("unk_token", out JsonElement u) && u.ValueKind == JsonValueKind.String ? u.GetString() : null;
            int? bos = addBos == false ? null : IdOf(bosToken ?? "<s>");
            int? eosId = IdOf("</s>");
            return BpeVocabulary.SentencePiece(path, vocab, merges, byteFallback, unk, prepend, added, bos, eosOverride ?? (eosId is int e ? [e] : []));
        }
        throw new TokenizerLoadException(path, "neither a byte-level nor a SentencePiece-style BPE tokenizer (unsupported pre-tokenizer/normalizer)");
    }

    private static string? TypeOf(JsonElement e) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out JsonElement t) ? t.GetString() : null;

    private static IEnumerable<JsonElement> Flatten(JsonElement e, string childrenName)
    {
        if (e.ValueKind != JsonValueKind.Object) yield break;
        if (TypeOf(e) == "Sequence" && e.TryGetProperty(childrenName, out JsonElement children))
        {
            foreach (JsonElement child in children.EnumerateArray())
                foreach (JsonElement x in Flatten(child, childrenName)) yield return x;
        }
        else yield return e;
    }
}
