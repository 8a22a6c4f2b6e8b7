using MoeCompiler.Tokenizers.Splitting;
using MoeCompiler.Tokenizers.Tests.Benchmarks;

namespace MoeCompiler.Tokenizers.Tests;

public class NaiveOracleTests
{
    [Theory]
    [InlineData("qwen.tiktoken", "qwen")]
    [InlineData("cl100k_base.tiktoken", "arcade100k")]
    public void FastEncoderEqualsTextbookBpeOnEnglishAndChinese(string file, string kind)
    {
        var naive = new NaiveBpe(Path.Combine(TestSupport.DataDirectory, file), PieceSplitter.QwenPattern);
        ITokenizer fast = TestSupport.Kind(kind);
        foreach (string text in new[] { SampleText.English(20_000, seed: 3), SampleText.Chinese(20_000, seed: 4) })
            Assert.Equal(naive.Encode(text), fast.Encode(text));
    }
}
