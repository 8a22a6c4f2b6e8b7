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

    /// <summary>LLaVA's conv_mistral_instruct (LLAMA_2 style, system "", sep2 "&lt;/s&gt;") and Mixtral-Instruct's format:
    /// "&lt;s&gt;[INST] {q} [/INST]", later turns " {a} &lt;/s&gt;[INST] {q} [/INST]".</summary>
    [Fact]
    public void MistralInstructPromptHasTheInstructShapeWithoutASystemPrompt()
    {
        Assert.Equal("<s>[INST] What is 2+2? [/INST]", PromptTemplates.Build("mistral_instruct", [], "What is 2+2?", null, withImage: false));
        Assert.Equal("<s>[INST] q1 [/INST] a1 </s>[INST] q2 [/INST] a2 </s>[INST] q3 [/INST]",
            PromptTemplates.Build("mistral_instruct", [("q1", "a1"), ("q2", "a2")], "q3", null, withImage: false));
        Assert.Equal("<s>[INST] <image>\nq [/INST]", PromptTemplates.Build("mistral_instruct", [], "q"));
        // The same conversation as mistral_instruct_system with an empty system prompt.
        Assert.Equal(PromptTemplates.Build("mistral_instruct_system", [("q1", "a1")], "q2", "", withImage: false),
            PromptTemplates.Build("mistral_instruct", [("q1", "a1")], "q2", null, withImage: false));
        Assert.Equal(PromptTemplates.Build("mistral_instruct", [], "q", "", withImage: false), PromptTemplates.Build("mistral_instruct", [], "q", null, withImage: false));
    }

    [Fact]
    public void MistralInstructRejectsASystemPrompt()
    {
        var error = Assert.Throws<ArgumentException>(() => PromptTemplates.Build("mistral_instruct", [], "q", "Be brief.", withImage: false));
        Assert.Contains("no system prompt", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MistralInstructTokenisesWithOneBosAndTheInstMarkers()
    {
        ITokenizer sp = TestSupport.Kind("sentencepiece");
        int[] ids = sp.Encode(PromptTemplates.Build("mistral_instruct", [], "Hello", null, withImage: false));
        Assert.Equal(1, ids[0]);
        Assert.Equal(1, ids.Count(id => id == 1));
        Assert.Equal("[INST] Hello [/INST]", sp.Decode(ids, skipSpecial: true).Trim());
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
    [InlineData("mistral_instruct", "</s>")]
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
