namespace MoeCompiler.Tokenizers.Tests;

public sealed class LoaderTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "moe-tok-" + Guid.NewGuid().ToString("N"));

    public LoaderTests() => Directory.CreateDirectory(_folder);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private void Copy(string dataFile, string asName) =>
        File.Copy(Path.Combine(TestSupport.DataDirectory, dataFile), Path.Combine(_folder, asName));

    private const string Sample = "Hello world! It's 2024 \u4f60\u597d <|endoftext|> caf\u00e9 \ud83e\udd99   x\n\n";

    [Fact]
    public void FolderWithTokenizerJsonLoadsIt()
    {
        Copy("phi2-tokenizer.json", "tokenizer.json");
        Assert.Equal(TestSupport.Kind("phi2").Encode(Sample), TokenizerLoader.FromFolder(_folder).Encode(Sample));
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("false", null)]
    [InlineData("true", 50256)]
    public void ByteLevelTokenizersAddNoBosUnlessConfigSaysSo(string? addBos, int? expectedBos)
    {
        Copy("phi2-tokenizer.json", "tokenizer.json");
        string flag = addBos is null ? "" : $", \"add_bos_token\": {addBos}";
        File.WriteAllText(Path.Combine(_folder, "tokenizer_config.json"), $"{{\"bos_token\": \"<|endoftext|>\", \"eos_token\": \"<|endoftext|>\"{flag}}}");
        Assert.Equal(expectedBos, TokenizerLoader.FromFolder(_folder).BosId);
    }

    [Theory]
    [InlineData(null, 1)]
    [InlineData("false", null)]
    public void SentencePieceTokenizersAddBosUnlessConfigSaysNot(string? addBos, int? expectedBos)
    {
        Copy("mistral-tokenizer.json", "tokenizer.json");
        if (addBos is not null) File.WriteAllText(Path.Combine(_folder, "tokenizer_config.json"), $"{{\"add_bos_token\": {addBos}}}");
        Assert.Equal(expectedBos, TokenizerLoader.FromFolder(_folder).BosId);
    }

    [Theory]
    [InlineData("tokenizer.model", "mistral-sentencepiece.model")]
    [InlineData("tokenizer.json", "mistral-tokenizer.json")]
    public void LegacyFalseInTokenizerConfigSelectsNonLegacyEncoding(string asName, string dataFile)
    {
        Copy(dataFile, asName);
        File.WriteAllText(Path.Combine(_folder, "tokenizer_config.json"), "{\"legacy\": false}");
        var tokenizer = Assert.IsType<SentencePieceBpeTokenizer>(TokenizerLoader.FromFolder(_folder));
        Assert.False(tokenizer.Legacy);
        Assert.Equal(((SentencePieceBpeTokenizer)TestSupport.Kind("sentencepiece")).WithLegacy(false).Encode("x</s>[INST] y"), tokenizer.Encode("x</s>[INST] y"));
    }

    [Fact]
    public void FolderWithQwenTiktokenLoadsQwen()
    {
        Copy("qwen.tiktoken", "qwen.tiktoken");
        ITokenizer tokenizer = TokenizerLoader.FromFolder(_folder);
        Assert.Equal(TestSupport.Kind("qwen").Encode(Sample), tokenizer.Encode(Sample));
        Assert.Equal(151851, tokenizer.VocabSize);
    }

    [Fact]
    public void FolderWithArcadeTiktokenLoadsArcade100k()
    {
        Copy("cl100k_base.tiktoken", "arcade100k.tiktoken");
        Assert.Equal(TestSupport.Kind("arcade100k").Encode(Sample), TokenizerLoader.FromFolder(_folder).Encode(Sample));
    }

    [Fact]
    public void FolderWithVocabAndMergesLoadsGpt2()
    {
        Copy("gpt2-vocab.json", "vocab.json");
        Copy("gpt2-merges.txt", "merges.txt");
        Assert.Equal(TestSupport.Kind("gpt2").Encode(Sample), TokenizerLoader.FromFolder(_folder).Encode(Sample));
    }

    [Fact]
    public void FolderWithSentencePieceModelAndAddedTokensLoadsOpenChat()
    {
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        File.WriteAllText(Path.Combine(_folder, "added_tokens.json"), "{\"<|end_of_turn|>\": 32000, \"<|pad_0|>\": 32001}");
        File.WriteAllText(Path.Combine(_folder, "tokenizer_config.json"), "{\"eos_token\": \"<|end_of_turn|>\", \"bos_token\": \"<s>\"}");
        ITokenizer tokenizer = TokenizerLoader.FromFolder(_folder);
        ITokenizer openchat = TestSupport.Kind("openchat");
        string text = "GPT4 Correct User: hi<|end_of_turn|>GPT4 Correct Assistant: \u4f60\u597d \ud83e\udd99";
        Assert.Equal(openchat.Encode(text), tokenizer.Encode(text));
        Assert.Equal([32000], tokenizer.EosIds);
        Assert.Equal(1, tokenizer.BosId);
        Assert.Equal(32002, tokenizer.VocabSize);
        Assert.Equal("hi", tokenizer.Decode(tokenizer.Encode("hi<|end_of_turn|>")));
    }

    [Fact]
    public void SentencePieceModelAndTokenizerJsonAgreeOnPlainText()
    {
        ITokenizer fromModel = TokenizerLoader.FromFile(Path.Combine(TestSupport.DataDirectory, "mistral-sentencepiece.model"));
        ITokenizer fromJson = TestSupport.Kind("sentencepiece");
        foreach (string text in TestSupport.VectorStrings())
            Assert.Equal(fromJson.Encode(text), fromModel.Encode(text));
        Assert.Equal(fromJson.VocabSize, fromModel.VocabSize);
        Assert.Equal(fromJson.BosId, fromModel.BosId);
        Assert.Equal(fromJson.EosIds, fromModel.EosIds);
    }

    [Fact]
    public void EmptyOrMissingFolderGivesAClearError()
    {
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.FromFolder(_folder));
        Assert.Equal(_folder, e.FilePath);
        Assert.Contains("no tokenizer files", e.Message);
        Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.FromFolder(Path.Combine(_folder, "missing")));
    }

    [Theory]
    [InlineData("qwen.tiktoken", "SGVsbG8= notanumber\n")]
    [InlineData("qwen.tiktoken", "!!!notbase64 0\n")]
    [InlineData("tokenizer.json", "{ \"model\": { \"type\": \"BPE\", \"vocab\": ")]
    [InlineData("tokenizer.json", "{ \"model\": { \"type\": \"Unigram\", \"vocab\": [] } }")]
    [InlineData("tokenizer.model", "\u000a\u00ff\u00ff\u00ff")]
    public void CorruptFilesGiveAnErrorNamingTheFile(string name, string content)
    {
        string path = Path.Combine(_folder, name);
        File.WriteAllText(path, content);
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.FromFolder(_folder));
        Assert.Equal(path, e.FilePath);
        Assert.StartsWith(path, e.Message);
    }

    [Fact]
    public void DamagedSentencePieceModelsLoadOrFailWithTokenizerLoadException()
    {
        byte[] original = File.ReadAllBytes(Path.Combine(TestSupport.DataDirectory, "mistral-sentencepiece.model"));
        var random = new Random(99);
        string path = Path.Combine(_folder, "tokenizer.model");
        for (int n = 0; n < 25; n++)
        {
            byte[] damaged = (byte[])original.Clone();
            if (n % 2 == 0) Array.Resize(ref damaged, random.Next(damaged.Length));
            else for (int k = 0; k < 20; k++) damaged[random.Next(damaged.Length)] = (byte)random.Next(256);
            File.WriteAllBytes(path, damaged);
            try
            {
                ITokenizer tokenizer = TokenizerLoader.FromFile(path);
                tokenizer.Decode(tokenizer.Encode("still usable? \u4f60\u597d"));
            }
            catch (TokenizerLoadException e)
            {
                Assert.Equal(path, e.FilePath);
            }
        }
    }

    [Theory]
    [InlineData("{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": 2147483000 }, \"merges\": [] }, \"pre_tokenizer\": { \"type\": \"ByteLevel\" } }")]
    [InlineData("{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": 0 }, \"merges\": [] }, \"added_tokens\": [ { \"id\": 1, \"content\": null } ] }")]
    [InlineData("{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": 0 }, \"merges\": [ \"a b\" ] }, \"pre_tokenizer\": { \"type\": \"ByteLevel\" } }")]
    [InlineData("{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": \"zero\" } } }")]
    public void MalformedTokenizerJsonGivesTokenizerLoadException(string json)
    {
        string path = Path.Combine(_folder, "tokenizer.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.FromFile(path));
        Assert.Equal(path, e.FilePath);
    }

    [Fact]
    public void TiktokenWithoutAllSingleBytesIsRejected()
    {
        string path = Path.Combine(_folder, "qwen.tiktoken");
        File.WriteAllText(path, "YQ== 0\nYg== 1\n");
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.FromFile(path));
        Assert.Contains("single byte", e.Message);
    }

    [Fact]
    public void UnknownKindNamesTheKnownOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => TokenizerLoader.ForKind("llama3"));
        Assert.Contains("arcade100k", e.Message);
        Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.ForKind("qwen", _folder));
    }
}
