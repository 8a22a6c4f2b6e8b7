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

    [Fact]
    public void EncodesEveryLlamaSentencePieceVector()
    {
        // llama-spm.out is Llama-2's vocabulary, not Mistral's: TestData/llama2 holds a rebuilt Llama-2
        // tokenizer.json (see its PROVENANCE.md), loaded through the same SentencePiece-style path.
        ITokenizer llama = TokenizerLoader.FromFile(TestSupport.TestData("llama2", "llama2-tokenizer.json"));
        Assert.IsType<SentencePieceBpeTokenizer>(llama);
        var strings = TestSupport.VectorStrings();
        var expected = TestSupport.VectorIds("llama-spm.out");
        for (int i = 0; i < strings.Count; i++)
        {
            Assert.True(expected[i].SequenceEqual(llama.Encode(strings[i])), $"#{i} {strings[i]}: expected [{TestSupport.Show(expected[i])}] got [{TestSupport.Show(llama.Encode(strings[i]))}]");
            Assert.Equal(strings[i], llama.Decode(expected[i]));
        }
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
