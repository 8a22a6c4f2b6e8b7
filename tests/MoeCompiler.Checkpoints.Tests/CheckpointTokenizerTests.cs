using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Tokenizers;

namespace MoeCompiler.Checkpoints.Tests;

/// <summary>CheckpointTokenizer: a checkpoint folder's tokenizer files when it has them, checked against the spec;
/// the bundled tokenizer otherwise. Folders are built in temp directories from the shipped vocabularies.</summary>
public sealed class CheckpointTokenizerTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "moe-ckpt-tok-" + Guid.NewGuid().ToString("N"));

    public CheckpointTokenizerTests() => Directory.CreateDirectory(_folder);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string Copy(string dataFile, string asName)
    {
        string path = Path.Combine(_folder, asName);
        File.Copy(Path.Combine(TokenizerLoader.DefaultDataDirectory, dataFile), path);
        return path;
    }

    private string Write(string name, string text)
    {
        string path = Path.Combine(_folder, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static ModelDescription Spec(string kind, int vocab, int tokenizerSize, int? bos, int[] eos, string template = "phi") => new()
    {
        Name = "SpecUnderTest", DisplayName = "spec", LlmFamily = "mistral", VocabSize = vocab, TokenizerSize = tokenizerSize,
        HiddenSize = 2, Layers = 1, Heads = 1, KvHeads = 1, HeadDim = 2, MaxPositions = 64,
        MoeLayers = [0], Experts = 2, TopK = 1, TokenizerKind = kind, EosIds = eos, BosId = bos,
        PromptTemplate = template, VisionTower = "clip", ImageSize = 2, ImageTokens = 1,
        ImageMean = [0, 0, 0], ImageStd = [1, 1, 1], VisionScales = [1], TotalParameters = 0, ActivatedParameters = 0,
    };

    private static readonly ModelDescription Mistral = Spec("sentencepiece", 32000, 32000, 1, [2], "mistral_instruct_system");
    private static readonly ModelDescription OpenChat = Spec("openchat", 32002, 32002, 1, [32000], "openchat");
    private static readonly ModelDescription Qwen = Spec("qwen", 151936, 151851, null, [151643], "qwen");
    private static readonly ModelDescription Gpt2 = Spec("gpt2", 51200, 50257, null, [50256]);
    private static readonly ModelDescription Phi2 = Spec("phi2", 51200, 50295, null, [50256]);

    private const string Sample = "<s>[INST] Hello world! caf\u00e9 \u4f60\u597d\n\n [/INST]";

    [Fact]
    public void WithoutAFolderOrTokenizerFilesTheBundledTokenizerIsUsed()
    {
        var bundled = CheckpointTokenizer.Load(null, OpenChat);
        Assert.Null(bundled.TokenizerFile);
        Assert.Equal("bundled openchat", bundled.Source);
        Assert.Equal(TokenizerLoader.ForKind("openchat").Encode(Sample), bundled.Tokenizer.Encode(Sample));

        Write("model.safetensors", "not read here");
        Write("config.json", "{}");
        var fromFolder = CheckpointTokenizer.Load(_folder, Mistral);
        Assert.Equal("bundled sentencepiece", fromFolder.Source);
        Assert.Equal(TokenizerLoader.ForKind("sentencepiece").Encode(Sample), fromFolder.Tokenizer.Encode(Sample));
    }

    [Fact]
    public void ASentencePieceModelInTheFolderIsUsedWithItsConfiguration()
    {
        string model = Copy("mistral-sentencepiece.model", "tokenizer.model");
        Write("tokenizer_config.json", "{\"tokenizer_class\": \"LlamaTokenizer\", \"legacy\": false, \"add_bos_token\": true}");
        var loaded = CheckpointTokenizer.Load(_folder, Mistral);
        Assert.Equal(model, loaded.TokenizerFile);
        Assert.Equal($"{model} (with tokenizer_config.json)", loaded.Source);
        Assert.False(Assert.IsType<SentencePieceBpeTokenizer>(loaded.Tokenizer).Legacy);
        // Non-legacy: no "▁" after <s>, so "[" (28792) instead of the bundled tokenizer's "▁[" (733).
        Assert.Equal([1, 28792], loaded.Tokenizer.Encode("<s>[")[..2]);
        Assert.Equal([1, 733], TokenizerLoader.ForKind("sentencepiece").Encode("<s>[")[..2]);
    }

    [Theory]
    [InlineData("mistral-tokenizer.json", "tokenizer.json", "sentencepiece")]
    [InlineData("qwen.tiktoken", "qwen.tiktoken", "qwen")]
    [InlineData("phi2-tokenizer.json", "tokenizer.json", "phi2")]
    public void EachKindOfTokenizerFileIsUsed(string dataFile, string asName, string kind)
    {
        string file = Copy(dataFile, asName);
        var spec = kind switch { "qwen" => Qwen, "phi2" => Phi2, _ => Mistral };
        var loaded = CheckpointTokenizer.Load(_folder, spec);
        Assert.Equal(file, loaded.TokenizerFile);
        Assert.Equal(file, loaded.Source);
        Assert.Equal(TokenizerLoader.ForKind(kind).Encode(Sample), loaded.Tokenizer.Encode(Sample));
    }

    [Fact]
    public void VocabAndMergesAreUsed()
    {
        string vocab = Copy("gpt2-vocab.json", "vocab.json");
        Copy("gpt2-merges.txt", "merges.txt");
        var loaded = CheckpointTokenizer.Load(_folder, Gpt2);
        Assert.Equal(vocab, loaded.TokenizerFile);
        Assert.Equal(TokenizerLoader.ForKind("gpt2").Encode(Sample), loaded.Tokenizer.Encode(Sample));
    }

    [Fact]
    public void AnOpenChatFolderGetsItsAddedTokensAndEosFromTheConfigurationFiles()
    {
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        Write("added_tokens.json", "{\"<|end_of_turn|>\": 32000, \"<|pad_0|>\": 32001}");
        Write("special_tokens_map.json", "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"<|end_of_turn|>\"}, \"pad_token\": \"<|pad_0|>\"}");
        var loaded = CheckpointTokenizer.Load(_folder, OpenChat);
        Assert.Equal([32000], loaded.Tokenizer.EosIds);
        Assert.Equal(TokenizerLoader.ForKind("openchat").Encode("GPT4 User: hi<|end_of_turn|>"), loaded.Tokenizer.Encode("GPT4 User: hi<|end_of_turn|>"));
        Assert.Contains("special_tokens_map.json", loaded.Source);
    }

    [Fact]
    public void WhenSeveralFilesExistTheSlowTokenizersFileWins()
    {
        string model = Copy("mistral-sentencepiece.model", "tokenizer.model");
        Copy("mistral-tokenizer.json", "tokenizer.json");
        Assert.Equal(model, CheckpointTokenizer.Load(_folder, Mistral).TokenizerFile);
        Write("tokenizer_config.json", "{\"tokenizer_class\": \"LlamaTokenizerFast\"}");
        Assert.Equal(Path.Combine(_folder, "tokenizer.json"), CheckpointTokenizer.Load(_folder, Mistral).TokenizerFile);
    }

    public static TheoryData<string, string, string> Mismatches() => new()
    {
        // file in the folder, spec, expected words in the message
        { "qwen.tiktoken", "tiny", "has 151851 tokens and so produces ids up to 151850, but SpecUnderTest's embedding has 512 rows" },
        { "tokenizer.model", "openchat", "has 32000 tokens, but SpecUnderTest's spec says 32002 (tokenizerSize)" },
        { "tokenizer.model", "openchat", "its EOS is [2], but SpecUnderTest's spec says [32000]" },
        { "tokenizer.model", "bos-none", "its BOS is 1, but SpecUnderTest's spec says none" },
        { "phi2.json", "sentencepiece-50295", "it is a byte-level BPE tokenizer, but SpecUnderTest's tokenizer kind \"sentencepiece\" is SentencePiece BPE" },
        { "qwen.tiktoken", "gpt2", "its EOS is [151643], but SpecUnderTest's spec says [50256]" },
    };

    [Theory]
    [MemberData(nameof(Mismatches))]
    public void ATokenizerThatDoesNotFitTheSpecIsAClearError(string file, string spec, string expected)
    {
        string path = file switch
        {
            "qwen.tiktoken" => Copy("qwen.tiktoken", "qwen.tiktoken"),
            "phi2.json" => Copy("phi2-tokenizer.json", "tokenizer.json"),
            _ => Copy("mistral-sentencepiece.model", "tokenizer.model"),
        };
        var description = spec switch
        {
            "tiny" => Spec("qwen", 512, 500, null, [151643]),
            "openchat" => OpenChat,
            "bos-none" => Spec("sentencepiece", 32000, 32000, null, [2]),
            "sentencepiece-50295" => Spec("sentencepiece", 51200, 50295, null, [50256]),
            _ => Spec("gpt2", 151936, 151851, null, [50256]),
        };
        var e = Assert.Throws<CheckpointTokenizerException>(() => CheckpointTokenizer.Load(_folder, description));
        Assert.Equal(path, e.FilePath);
        Assert.StartsWith($"{path}: this tokenizer cannot be used with SpecUnderTest: ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.IsAssignableFrom<CheckpointException>(e);
    }

    [Fact]
    public void TheBosSwitchedOffInTheConfigIsAMismatchWithASpecThatHasOne()
    {
        string model = Copy("mistral-sentencepiece.model", "tokenizer.model");
        Write("tokenizer_config.json", "{\"add_bos_token\": false}");
        var e = Assert.Throws<CheckpointTokenizerException>(() => CheckpointTokenizer.Load(_folder, Mistral));
        Assert.Equal(model, e.FilePath);
        Assert.Equal(["its BOS is none, but SpecUnderTest's spec says 1"], e.Problems);
    }

    [Fact]
    public void AMalformedTokenizerConfigIsAnErrorNamingIt()
    {
        Copy("mistral-sentencepiece.model", "tokenizer.model");
        string config = Write("tokenizer_config.json", "{\"legacy\": false, \"add_bos_token\": ");
        var e = Assert.Throws<CheckpointTokenizerException>(() => CheckpointTokenizer.Load(_folder, Mistral));
        Assert.Equal(config, e.FilePath);
        Assert.StartsWith(config + ": this tokenizer cannot be used with SpecUnderTest: cannot read", e.Message);
        Assert.IsType<TokenizerLoadException>(e.InnerException);
    }

    [Fact]
    public void ACorruptTokenizerFileIsAnErrorNamingIt()
    {
        string model = Write("tokenizer.model", "\u000a\u00ff\u00ff\u00ff");
        var e = Assert.Throws<CheckpointTokenizerException>(() => CheckpointTokenizer.Load(_folder, Mistral));
        Assert.Equal(model, e.FilePath);
    }

    [Fact]
    public void AMissingFolderIsAnError()
    {
        string missing = Path.Combine(_folder, "missing");
        var e = Assert.Throws<CheckpointException>(() => CheckpointTokenizer.Load(missing, Mistral));
        Assert.Equal(missing, e.FilePath);
    }
}
