using System.Text.Json;
using MoeCompiler.Tokenizers.Loading;

namespace MoeCompiler.Tokenizers.Tests;

/// <summary>Regression tests for issue 17 (hostile tokenizer files), each building its hostile file here.</summary>
public sealed class HostileInputTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "moe-tok-hostile-" + Guid.NewGuid().ToString("N"));

    public HostileInputTests() => Directory.CreateDirectory(_folder);

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    /// <summary>A byte-level BPE tokenizer.json: the 256 byte tokens plus "ab", with the given merges and Split regex.</summary>
    internal static string ByteLevelJson(object?[] merges, object? splitRegex, bool withSplit = true)
    {
        var vocab = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++) vocab[Gpt2ByteMap.ByteToChar[b].ToString()] = b;
        vocab["ab"] = 256;
        var pre = new List<object> { new Dictionary<string, object> { ["type"] = "ByteLevel", ["add_prefix_space"] = false } };
        if (withSplit)
            pre.Insert(0, new Dictionary<string, object?> { ["type"] = "Split", ["pattern"] = new Dictionary<string, object?> { ["Regex"] = splitRegex }, ["behavior"] = "Isolated" });
        return JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["model"] = new Dictionary<string, object> { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = merges },
            ["pre_tokenizer"] = new Dictionary<string, object> { ["type"] = "Sequence", ["pretokenizers"] = pre },
        });
    }

    private string Write(string name, string content)
    {
        string path = Path.Combine(_folder, name);
        File.WriteAllText(path, content);
        return path;
    }

    [Fact]
    public void The_test_tokenizer_json_loads_when_nothing_is_wrong()
    {
        // the control for the cases below: the same file with a good merge and regex loads and merges "ab"
        var tokenizer = TokenizerLoader.FromFile(Write("tokenizer.json", ByteLevelJson(["a b"], @"\w+|\W")));
        Assert.Equal(new[] { 256, (int)' ', 256 }, tokenizer.Encode("ab ab"));
    }

    [Theory]
    [InlineData("empty merge string", "\"\"", "is not \"left right\"")]
    [InlineData("merge without a right side", "\"a \"", "is not \"left right\"")]
    [InlineData("one-element merge array", "[\"a\"]", "not a [left, right] pair")]
    [InlineData("three-element merge array", "[\"a\", \"b\", \"c\"]", "not a [left, right] pair")]
    [InlineData("empty token in a merge array", "[\"\", \"b\"]", "has an empty token")]
    public void Malformed_merges_are_load_errors(string what, string mergeJson, string expected)
    {
        string json = ByteLevelJson([], @"\w+").Replace("\"merges\":[]", "\"merges\":[" + mergeJson + "]", StringComparison.Ordinal);
        Assert.Contains(mergeJson, json);
        string path = Write("tokenizer.json", json);
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.FromFile(path));
        Assert.Contains(path, e.Message);
        Assert.True(e.Message.Contains(expected, StringComparison.Ordinal), $"{what}: {e.Message}");
    }

    [Theory]
    [InlineData(null, "is Null, not a string")]
    [InlineData("(unclosed", "is not a valid regular expression")]
    [InlineData("a{2,1}", "is not a valid regular expression")]
    public void Invalid_or_null_split_regexes_are_load_errors(string? regex, string expected)
    {
        string path = Write("tokenizer.json", ByteLevelJson(["a b"], regex));
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.FromFile(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_catastrophically_backtracking_split_regex_is_refused_when_loaded()
    {
        string path = Write("tokenizer.json", ByteLevelJson(["a b"], "(a+)+$"));
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.FromFile(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("backtracks catastrophically", e.Message);
    }

    [Fact]
    public void A_backtracking_regex_the_load_probes_miss_fails_encode_with_the_file_named()
    {
        // 'x' is in none of the load-time probes; 41 characters of it take minutes without a match timeout
        string path = Write("tokenizer.json", ByteLevelJson(["a b"], "(x+x+)+y|."));
        var tokenizer = TokenizerLoader.FromFile(path);
        var e = Assert.Throws<TokenizerLoadException>(() => tokenizer.Encode(new string('x', 41)));
        Assert.Contains(path, e.Message);
        Assert.IsType<System.Text.RegularExpressions.RegexMatchTimeoutException>(e.InnerException);
    }

    [Fact]
    public void A_huge_tiktoken_rank_is_refused_before_anything_is_sized_by_it()
    {
        string path = Write("qwen.tiktoken", "YQ== 0\nYg== 9999999\n");
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.FromFile(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("gives rank 9999999, but a file of 2 lines", e.Message);
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 16 << 20);
    }

    [Theory]
    [InlineData("tokenizer.json")]
    [InlineData("qwen.tiktoken")]
    [InlineData("tokenizer.model")]
    public void A_link_to_dev_zero_is_refused_without_reading_it(string name)
    {
        string link = Path.Combine(_folder, name);
        File.CreateSymbolicLink(link, "/dev/zero");
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.FromFile(link));
        Assert.Contains(link, e.Message);
        Assert.Contains("not a regular file", e.Message);
    }

    [Theory]
    [InlineData("tokenizer.json")]
    [InlineData("vocab.json")]
    [InlineData("tokenizer_config.json")]
    public async Task A_fifo_is_refused_without_opening_it(string name)
    {
        if (name == "vocab.json") File.WriteAllText(Path.Combine(_folder, "merges.txt"), "a b\n");
        if (name == "tokenizer_config.json") File.WriteAllText(Path.Combine(_folder, "tokenizer.json"), ByteLevelJson(["a b"], @"\w+"));
        string fifo = Path.Combine(_folder, name);
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [fifo])) mkfifo.WaitForExit();
        // a blocked open would never return: the guard turns that into a failure instead of a hung test run
        var load = Task.Run(() => Assert.Throws<TokenizerLoadException>(() => TokenizerLoader.FromFolder(_folder)));
        var e = await load.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Contains(fifo, e.Message);
        Assert.Contains("not a regular file", e.Message);
    }
}
