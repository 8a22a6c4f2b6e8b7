namespace MoeCompiler.Tokenizers.Tests;

/// <summary>The 46 llama.cpp strings against ids produced by the Hugging Face reference tokenizers.</summary>
public class HuggingFaceVectorTests
{
    [Theory]
    [InlineData("gpt2", "gpt2.out")]
    [InlineData("phi2", "phi-2.out")]
    [InlineData("qwen", "qwen2.out")]
    public void EncodesEveryVectorLikeHuggingFace(string kind, string file)
    {
        ITokenizer tokenizer = TestSupport.Kind(kind);
        var strings = TestSupport.VectorStrings();
        var expected = TestSupport.VectorIds(file);
        Assert.Equal(46, strings.Count);
        Assert.Equal(strings.Count, expected.Count);
        var failures = new List<string>();
        for (int i = 0; i < strings.Count; i++)
        {
            int[] actual = tokenizer.Encode(strings[i]);
            if (!actual.SequenceEqual(expected[i]))
                failures.Add($"#{i} {strings[i]}: expected [{TestSupport.Show(expected[i])}] got [{TestSupport.Show(actual)}]");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Theory]
    [InlineData("gpt2", "gpt2.out")]
    [InlineData("phi2", "phi-2.out")]
    [InlineData("qwen", "qwen2.out")]
    public void DecodesEveryVectorBackToItsString(string kind, string file)
    {
        ITokenizer tokenizer = TestSupport.Kind(kind);
        var strings = TestSupport.VectorStrings();
        var expected = TestSupport.VectorIds(file);
        for (int i = 0; i < strings.Count; i++)
            Assert.Equal(strings[i], tokenizer.Decode(expected[i]));
    }
}
