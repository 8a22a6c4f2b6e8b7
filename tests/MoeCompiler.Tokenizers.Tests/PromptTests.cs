namespace MoeCompiler.Tokenizers.Tests;

public class PromptTests
{
    [Fact]
    public void PhiPromptHasTheReferenceShape()
    {
        string prompt = PromptTemplates.Build("phi", [("q1", "a1")], "q2");
        Assert.Equal(PromptTemplates.DefaultSystem + " USER: <image>\nq1 ASSISTANT: a1<|endoftext|>USER: q2 ASSISTANT:", prompt);
    }

    [Fact]
    public void MistralInstructSystemPromptHasTheReferenceShape()
    {
        string prompt = PromptTemplates.Build("mistral_instruct_system", [("q1", "a1")], "q2", system: "S");
        Assert.Equal("<s>[INST] <<SYS>>\nS\n<</SYS>>\n\n<image>\nq1 [/INST] a1 </s>[INST] q2 [/INST]", prompt);
        Assert.Equal("<s>[INST] <image>\nq [/INST]", PromptTemplates.Build("mistral_instruct_system", [], "q", system: ""));
    }

    [Fact]
    public void TextOnlyPromptsHaveNoImagePlaceholder()
    {
        foreach (string name in PromptTemplates.Names)
            Assert.DoesNotContain("<image>", PromptTemplates.Build(name, [("a", "b")], "c", null, withImage: false));
    }

    [Theory]
    [InlineData("phi", "<|endoftext|>")]
    [InlineData("stablelm", "<|endoftext|>")]
    [InlineData("qwen", "<|endoftext|>")]
    [InlineData("openchat", "<|end_of_turn|>")]
    [InlineData("mistral_instruct_system", "</s>")]
    [InlineData("plain", "\n")]
    public void StopStringsAreTheTurnSeparators(string template, string stop)
    {
        Assert.Equal([stop], PromptTemplates.StopStrings(template));
    }

    [Fact]
    public void UnknownTemplateIsAnError()
    {
        Assert.Throws<ArgumentException>(() => PromptTemplates.Build("vicuna", [], "q"));
        Assert.Throws<ArgumentException>(() => PromptTemplates.StopStrings("vicuna"));
    }

    [Fact]
    public void ImageChunksAreTokenisedSeparatelyWithOneLeadingBos()
    {
        ITokenizer sp = TestSupport.Kind("sentencepiece");
        int[] ids = ImagePromptTokenizer.Tokenize(sp, "A <image> B <image>", addBos: true);
        int[] expected = [1, .. sp.Encode("A "), -200, .. sp.Encode(" B "), -200];
        Assert.Equal(expected, ids);
        Assert.Equal(1, ids.Count(id => id == 1));
        Assert.Equal(sp.Encode("A "), ImagePromptTokenizer.Tokenize(sp, "A ", addBos: false));
    }

    [Fact]
    public void TokenizersWithoutBosNeverGetOne()
    {
        ITokenizer qwen = TestSupport.Kind("qwen");
        int[] ids = ImagePromptTokenizer.Tokenize(qwen, "<image>\nhi", addBos: true);
        Assert.Equal([-200, .. qwen.Encode("\nhi")], ids);
    }
}
