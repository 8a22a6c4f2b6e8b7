using System.Text.Json;

namespace MoeCompiler.Tokenizers.Tests;

/// <summary>TokenizerLoader.LoadFolder: which file of a model folder is used, and what tokenizer_config.json,
/// special_tokens_map.json and added_tokens.json change (transformers 4.37's rules, see TokenizerFolderConfig).</summary>
public sealed class FolderTokenizerTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "moe-tokfolder-" + Guid.NewGuid().ToString("N"));

    public FolderTokenizerTests() => Directory.CreateDirectory(_folder);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string Copy(string dataFile, string asName)
    {
        string path = Path.Combine(_folder, asName);
        File.Copy(Path.Combine(TestSupport.DataDirectory, dataFile), path);
        return path;
    }

    private string Write(string name, string text)
    {
        string path = Path.Combine(_folder, name);
        File.WriteAllText(path, text);
        return path;
    }

    private sealed record LegacyRow(string Text, int[] Legacy, int[] NonLegacy);

    public static TheoryData<bool, string> LegacyModes() => new()
    {
        { true, "tokenizer.model" }, { false, "tokenizer.model" },
        // A folder with only tokenizer.json is read the same way (the slow class is what the reference asks for).
        { true, "tokenizer.json" }, { false, "tokenizer.json" },
    };

    [Theory]
    [MemberData(nameof(LegacyModes))]
    public void LegacyFlagGivesTheSlowLlamaTokenizerIds(bool legacy, string file)
    {
        Copy(file == "tokenizer.model" ? "mistral-sentencepiece.model" : "mistral-tokenizer.json", file);
        Write("tokenizer_config.json", $"{{\"tokenizer_class\": \"LlamaTokenizer\", \"legacy\": {(legacy ? "true" : "false")}}}");
        var loaded = TokenizerLoader.LoadFolder(_folder);
        Assert.Equal(Path.Combine(_folder, file), loaded.TokenizerFile);
        Assert.Equal(legacy, Assert.IsType<SentencePieceBpeTokenizer>(loaded.Tokenizer).Legacy);

        var rows = File.ReadAllLines(TestSupport.TestData("peer", "slow-llama-legacy.jsonl"))
            .Where(l => l.Length > 0)
            .Select(l => JsonSerializer.Deserialize<LegacyRow>(l, new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!)
            .ToList();
        Assert.True(rows.Count(r => !r.Legacy.SequenceEqual(r.NonLegacy)) > 30, "the golden should exercise the difference");
        var failures = rows.Select(r => (r.Text, Expected: legacy ? r.Legacy : r.NonLegacy, Actual: loaded.Tokenizer.Encode(r.Text)))
            .Where(r => !r.Expected.SequenceEqual(r.Actual))
            .Select(r => $"{JsonSerializer.Serialize(r.Text)}: expected [{TestSupport.Show(r.Expected)}] got [{TestSupport.Show(r.Actual)}]")
            .ToList();
        Assert.True(failures.Count == 0, $"{failures.Count} of {rows.Count} differ:\n" + string.Join("\n", failures));
    }

    [Fact]
    public void AFastClassUsesTokenizerJsonAsItIsAndIgnoresLegacy()
    {
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        Copy("mistral-tokenizer.json", "tokenizer.json");
        Write("tokenizer_config.json", "{\"tokenizer_class\": \"LlamaTokenizerFast\", \"legacy\": false}");
        var loaded = TokenizerLoader.LoadFolder(_folder);
        Assert.Equal(Path.Combine(_folder, "tokenizer.json"), loaded.TokenizerFile);
        Assert.True(Assert.IsType<SentencePieceBpeTokenizer>(loaded.Tokenizer).Legacy);
        Assert.Equal(TestSupport.Kind("sentencepiece").Encode("<s>[INST] hi"), loaded.Tokenizer.Encode("<s>[INST] hi"));
    }

    [Theory]
    // The slow tokenizer's file comes first (use_fast=False), tokenizer.json only when nothing else is there...
    [InlineData(null, "tokenizer.model")]
    [InlineData("LlamaTokenizer", "tokenizer.model")]
    // ...unless the config names a fast class, which AutoTokenizer builds from tokenizer.json whatever use_fast says.
    [InlineData("LlamaTokenizerFast", "tokenizer.json")]
    [InlineData("PreTrainedTokenizerFast", "tokenizer.json")]
    public void SentencePieceModelComesBeforeTokenizerJson(string? tokenizerClass, string expected)
    {
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        Copy("phi2-tokenizer.json", "tokenizer.json"); // a different vocabulary, so the choice shows in VocabSize
        if (tokenizerClass is not null) Write("tokenizer_config.json", $"{{\"tokenizer_class\": \"{tokenizerClass}\"}}");
        var loaded = TokenizerLoader.LoadFolder(_folder);
        Assert.Equal(Path.Combine(_folder, expected), loaded.TokenizerFile);
        Assert.Equal(expected == "tokenizer.model" ? 32000 : 50295, loaded.Tokenizer.VocabSize);
    }

    [Theory]
    [InlineData(null, "vocab.json", 50257)]
    [InlineData("CodeGenTokenizer", "vocab.json", 50257)]
    [InlineData("CodeGenTokenizerFast", "tokenizer.json", 50295)]
    public void VocabAndMergesComeBeforeTokenizerJson(string? tokenizerClass, string expected, int vocabSize)
    {
        Copy("gpt2-vocab.json", "vocab.json");
        Copy("gpt2-merges.txt", "merges.txt");
        Copy("phi2-tokenizer.json", "tokenizer.json");
        if (tokenizerClass is not null) Write("tokenizer_config.json", $"{{\"tokenizer_class\": \"{tokenizerClass}\"}}");
        var loaded = TokenizerLoader.LoadFolder(_folder);
        Assert.Equal(Path.Combine(_folder, expected), loaded.TokenizerFile);
        Assert.Equal(vocabSize, loaded.Tokenizer.VocabSize);
    }

    [Fact]
    public void TheTokenizerClassPicksBetweenSlowFiles()
    {
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        Copy("qwen.tiktoken", "qwen.tiktoken");
        Assert.Equal(Path.Combine(_folder, "tokenizer.model"), TokenizerLoader.LoadFolder(_folder).TokenizerFile);
        Write("tokenizer_config.json", "{\"tokenizer_class\": \"QWenTokenizer\"}");
        var loaded = TokenizerLoader.LoadFolder(_folder);
        Assert.Equal(Path.Combine(_folder, "qwen.tiktoken"), loaded.TokenizerFile);
        Assert.Equal(151851, loaded.Tokenizer.VocabSize);
    }

    [Fact]
    public void ReportsTheConfigurationFilesItRead()
    {
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        string config = Write("tokenizer_config.json", "{\"tokenizer_class\": \"LlamaTokenizer\"}");
        string map = Write("special_tokens_map.json", "{\"eos_token\": \"</s>\"}");
        Assert.Equal([config, map], TokenizerLoader.LoadFolder(_folder).ConfigFiles);
        Assert.True(TokenizerLoader.HasTokenizerFiles(_folder));
        File.Delete(Path.Combine(_folder, "tokenizer.model"));
        Assert.False(TokenizerLoader.HasTokenizerFiles(_folder));
    }

    [Fact]
    public void SpecialTokensMapNamesEosAndMarksAddedTokensSpecial()
    {
        // An older OpenChat-style folder: no added_tokens_decoder, so the map and added_tokens.json are read.
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        Write("added_tokens.json", "{\"<|end_of_turn|>\": 32000, \"<|pad_0|>\": 32001}");
        Write("tokenizer_config.json", "{\"eos_token\": \"</s>\", \"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\", \"lstrip\": false}}");
        Write("special_tokens_map.json", "{\"eos_token\": {\"content\": \"<|end_of_turn|>\", \"lstrip\": false, \"rstrip\": false}, \"pad_token\": \"<|pad_0|>\"}");
        var tokenizer = Assert.IsAssignableFrom<TokenizerBase>(TokenizerLoader.FromFolder(_folder));
        Assert.Equal([32000], tokenizer.EosIds); // the map overrides tokenizer_config.json
        Assert.Equal(1, tokenizer.BosId);
        Assert.True(tokenizer.IsSpecial(32000));
        Assert.True(tokenizer.IsSpecial(32001));
        Assert.Equal(32002, tokenizer.VocabSize);
        Assert.Equal("hi", tokenizer.Decode(tokenizer.Encode("hi<|end_of_turn|><|pad_0|>")));
    }

    [Fact]
    public void AddedTokensJsonEntriesNotNamedAsSpecialAreOrdinaryAddedTokens()
    {
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        Write("added_tokens.json", "{\"<|end_of_turn|>\": 32000}");
        var tokenizer = TokenizerLoader.FromFolder(_folder);
        Assert.False(tokenizer.IsSpecial(32000));
        Assert.Equal([2], tokenizer.EosIds);
        int[] ids = [.. tokenizer.Encode("hi"), 32000];
        Assert.Equal(ids, tokenizer.Encode("hi<|end_of_turn|>", allowSpecial: false)); // still matched as one token
        Assert.Equal("hi<|end_of_turn|>", tokenizer.Decode(ids));
    }

    [Fact]
    public void AddedTokensDecoderIsTheAuthorityAndTheMapIsNotRead()
    {
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        Write("tokenizer_config.json", """
            {"added_tokens_decoder": {"32000": {"content": "<|end_of_turn|>", "special": true, "lstrip": false, "rstrip": false, "single_word": false, "normalized": false},
                                      "32001": {"content": "<|pad_0|>", "special": false}},
             "eos_token": "<|end_of_turn|>", "bos_token": "<s>", "add_bos_token": true}
            """);
        Write("special_tokens_map.json", "{\"eos_token\": \"</s>\"}");
        Write("added_tokens.json", "{\"<|other|>\": 32002}");
        var loaded = TokenizerLoader.LoadFolder(_folder);
        var tokenizer = loaded.Tokenizer;
        Assert.Equal([32000], tokenizer.EosIds);
        Assert.True(tokenizer.IsSpecial(32000));
        Assert.False(tokenizer.IsSpecial(32001));
        Assert.Equal(32002, tokenizer.VocabSize); // added_tokens.json was not read
        Assert.Equal([Path.Combine(_folder, "tokenizer_config.json")], loaded.ConfigFiles);
    }

    [Theory]
    [InlineData("{\"add_bos_token\": false}", null)]
    [InlineData("{\"add_bos_token\": true, \"bos_token\": {\"content\": \"</s>\"}}", 2)]
    public void AddBosTokenAndBosTokenChooseTheBos(string config, int? expected)
    {
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        Write("tokenizer_config.json", config);
        Assert.Equal(expected, TokenizerLoader.FromFolder(_folder).BosId);
    }

    [Fact]
    public void AddEosTokenEndsEveryPromptChunkWithEos()
    {
        // tokenizer_image_token calls tokenizer(chunk) per chunk; with add_eos_token each chunk ends in EOS.
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        Write("tokenizer_config.json", "{\"add_eos_token\": true}");
        var tokenizer = TokenizerLoader.FromFolder(_folder);
        Assert.True(((TokenizerBase)tokenizer).AddsEos);
        int[] ids = ImagePromptTokenizer.Tokenize(tokenizer, "USER: <image>\nWhat?", addBos: true);
        int[] expected = [1, .. tokenizer.Encode("USER: "), 2, ImagePromptTokenizer.ImageTokenId, .. tokenizer.Encode("\nWhat?"), 2];
        Assert.Equal(expected, ids);
        Assert.False(((TokenizerBase)TestSupport.Kind("sentencepiece")).AddsEos);
    }

    [Fact]
    public void ByteLevelFolderFollowsGpt2Defaults()
    {
        Copy("gpt2-vocab.json", "vocab.json");
        Copy("gpt2-merges.txt", "merges.txt");
        Write("special_tokens_map.json", "{\"bos_token\": \"<|endoftext|>\", \"eos_token\": \"<|endoftext|>\", \"unk_token\": \"<|endoftext|>\"}");
        var tokenizer = TokenizerLoader.FromFolder(_folder);
        Assert.Null(tokenizer.BosId);
        Assert.Equal([50256], tokenizer.EosIds);
        Assert.True(tokenizer.IsSpecial(50256));
    }

    public static TheoryData<string, string, string> BadConfigs() => new()
    {
        { "tokenizer_config.json", "{\"legacy\": false,", "cannot read" },
        { "tokenizer_config.json", "[1, 2]", "not a JSON object" },
        { "tokenizer_config.json", "{\"add_bos_token\": \"yes\"}", "add_bos_token is not true or false" },
        { "tokenizer_config.json", "{\"legacy\": 0}", "legacy is not true or false" },
        { "tokenizer_config.json", "{\"eos_token\": 2}", "eos_token is neither" },
        { "tokenizer_config.json", "{\"bos_token\": {\"id\": 1}}", "bos_token is neither" },
        { "tokenizer_config.json", "{\"tokenizer_class\": 7}", "tokenizer_class is not a string" },
        { "tokenizer_config.json", "{\"added_tokens_decoder\": [1]}", "added_tokens_decoder is not an object" },
        { "tokenizer_config.json", "{\"added_tokens_decoder\": {\"x\": {\"content\": \"a\"}}}", "the key is not a token id" },
        { "tokenizer_config.json", "{\"added_tokens_decoder\": {\"32000\": {\"special\": true}}}", "has no \"content\" string" },
        { "tokenizer_config.json", "{\"added_tokens_decoder\": {\"32000\": {\"content\": \"<x>\", \"rstrip\": true}}}", "rstrip=true, which is not supported" },
        { "tokenizer_config.json", "{\"eos_token\": \"<|im_end|>\"}", "eos_token \"<|im_end|>\" is not a token of" },
        { "special_tokens_map.json", "{\"eos_token\": [\"</s>\"]}", "eos_token is neither" },
        { "special_tokens_map.json", "{\"additional_special_tokens\": \"<x>\"}", "additional_special_tokens is not a list" },
        { "special_tokens_map.json", "{\"bos_token\": \"<nope>\"}", "bos_token \"<nope>\" is not a token of" },
        { "added_tokens.json", "{\"<x>\": \"32000\"}", "has no valid id" },
        { "added_tokens.json", "[\"<x>\"]", "not a JSON object" },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public void MalformedConfigurationGivesAnErrorNamingTheFile(string name, string content, string expected)
    {
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        string path = Write(name, content);
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.LoadFolder(_folder));
        Assert.Equal(path, e.FilePath);
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void AddPrefixSpaceOnAByteLevelTokenizerIsRefused()
    {
        Copy("phi2-tokenizer.json", "tokenizer.json");
        string config = Write("tokenizer_config.json", "{\"add_prefix_space\": true}");
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.LoadFolder(_folder));
        Assert.Equal(config, e.FilePath);
        Assert.Contains("add_prefix_space", e.Message);
    }
}
