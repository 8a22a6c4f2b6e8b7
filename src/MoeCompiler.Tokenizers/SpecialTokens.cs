namespace MoeCompiler.Tokenizers;

/// <summary>Special-token tables of the tiktoken-format tokenizers (which ship no tokenizer.json) and
/// OpenChat's additions to the Mistral vocabulary (Qwen's tokenization_qwen.py, StableLM's tokenization_arcade100k.py, OpenChat's added_tokens.json on the Hugging Face hub; docs/tokenizers.md).</summary>
public static class SpecialTokens
{
    public const int QwenEndOfText = 151643;
    public const int QwenImStart = 151644;
    public const int QwenImEnd = 151645;
    public const int QwenVocabSize = 151851;

    public const int Arcade100kEndOfText = 100257;
    public const int Arcade100kVocabSize = 100289;

    public const int OpenChatEndOfTurn = 32000;
    public const int OpenChatPad0 = 32001;

    public static IReadOnlyList<AddedToken> Qwen()
    {
        var list = new List<AddedToken>
        {
            new("<|endoftext|>", QwenEndOfText, true),
            new("<|im_start|>", QwenImStart, true),
            new("<|im_end|>", QwenImEnd, true),
        };
        for (int i = 0; i < 205; i++) list.Add(new($"<|extra_{i}|>", 151646 + i, true));
        return list;
    }

    public static IReadOnlyList<AddedToken> Arcade100k()
    {
        string[] names =
        [
            "<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
            "<gh_stars>", "<filename>", "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>",
            "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<empty_output>", "<commit_before>",
            "<commit_msg>", "<commit_after>", "<reponame>",
            "<|endofprompt|>", "<|im_start|>", "<|im_end|>", "<|pause|>",
            "<|reg0|>", "<|reg1|>", "<|reg2|>", "<|reg3|>", "<|reg4|>", "<|reg5|>", "<|reg6|>", "<|reg7|>",
            "<|extra0|>",
        ];
        return names.Select((name, i) => new AddedToken(name, Arcade100kEndOfText + i, true)).ToList();
    }

    public static IReadOnlyList<AddedToken> OpenChatAdded() =>
    [
        new("<|end_of_turn|>", OpenChatEndOfTurn, true),
        new("<|pad_0|>", OpenChatPad0, true),
    ];
}
