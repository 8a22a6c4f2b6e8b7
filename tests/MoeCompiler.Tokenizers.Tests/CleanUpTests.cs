using System.Text;

namespace MoeCompiler.Tokenizers.Tests;

public sealed class CleanUpTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "moe-tok-clean-" + Guid.NewGuid().ToString("N"));

    public CleanUpTests() => Directory.CreateDirectory(_folder);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Theory]
    [InlineData("Hello , world ! Is it ? Yes .", "Hello, world! Is it? Yes.")]
    [InlineData("I 'm sure it 's fine , we 've and they 're", "I'm sure it's fine, we've and they're")]
    [InlineData("do n't", "don't")]
    [InlineData("do n ' t", "don't")]              // " ' " first, then " n't": the passes are sequential
    [InlineData("a  .", "a .")]                   // replace is non-overlapping and not repeated
    [InlineData("no change here", "no change here")]
    public void CleanUpFollowsHuggingFacesReplacementSequence(string text, string expected)
    {
        Assert.Equal(expected, TokenizationSpaces.CleanUp(text));
    }

    private ITokenizer PhiFolder(string? configJson)
    {
        File.Copy(Path.Combine(TestSupport.DataDirectory, "phi2-tokenizer.json"), Path.Combine(_folder, "tokenizer.json"), overwrite: true);
        string config = Path.Combine(_folder, "tokenizer_config.json");
        if (configJson is null) File.Delete(config);
        else File.WriteAllText(config, configJson);
        return TokenizerLoader.FromFolder(_folder);
    }

    [Fact]
    public void FolderConfigDecidesWhetherDecodeCleansUp()
    {
        Assert.True(((TokenizerBase)PhiFolder(null)).CleansUpTokenizationSpaces);   // transformers 4.37 default
        Assert.False(((TokenizerBase)PhiFolder("{\"clean_up_tokenization_spaces\": false}")).CleansUpTokenizationSpaces);
        ITokenizer phi = PhiFolder("{\"clean_up_tokenization_spaces\": true}");
        Assert.Equal("Yes, it's here.", phi.Decode(phi.Encode("Yes , it 's here .")));
        Assert.False(((TokenizerBase)TestSupport.Kind("phi2")).CleansUpTokenizationSpaces);
    }

    [Fact]
    public void StreamingWithCleanUpEqualsBatchDecode()
    {
        ITokenizer phi = PhiFolder("{\"clean_up_tokenization_spaces\": true}");
        string[] words = ["a", " b", " .", " ,", " ?", " !", " '", " ' ", " n", "n't", " n't", "'t", " 's", "s", " 'm", " 've", " 're", "e", " ", "  ", "r", "\n", "\u00e9", " \u4f60"];
        var random = new Random(17);
        for (int n = 0; n < 500; n++)
        {
            var text = new StringBuilder();
            int count = random.Next(1, 15);
            for (int i = 0; i < count; i++) text.Append(words[random.Next(words.Length)]);
            int[] ids = phi.Encode(text.ToString());
            StreamingDecoder decoder = phi.CreateStreamingDecoder();
            string streamed = string.Concat(ids.Select(decoder.Push)) + decoder.Flush();
            Assert.Equal(phi.Decode(ids), streamed);
            Assert.Equal(TokenizationSpaces.CleanUp(text.ToString()), streamed);
        }
    }
}
