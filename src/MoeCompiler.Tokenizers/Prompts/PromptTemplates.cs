using System.Text;

namespace MoeCompiler.Tokenizers;

/// <summary>The conversation templates of MoE-LLaVA (phi, stablelm, qwen, openchat, plain) and CuMo
/// (mistral_instruct_system), reproducing the reference's Conversation.get_prompt strings exactly, and
/// mistral_instruct, the same LLaMA-2 style without a system prompt (LLaVA's conv_mistral_instruct, the format of
/// Mistral/Mixtral-Instruct). The first user turn starts with "&lt;image&gt;\n", as the reference's evaluation and
/// CLI put it, unless the prompt is for a text-only model.</summary>
public static class PromptTemplates
{
    public const string ImagePlaceholder = "<image>";

    public const string DefaultSystem =
        "A chat between a curious user and an artificial intelligence assistant. " +
        "The assistant gives helpful, detailed, and polite answers to the user's questions.";

    public static IReadOnlyList<string> Names { get; } = ["phi", "stablelm", "qwen", "openchat", "plain", "mistral_instruct_system", "mistral_instruct"];

    public static string Build(string template, IReadOnlyList<(string User, string Assistant)> history, string question, string? system = null) =>
        Build(template, history, question, system, withImage: true);

    /// <summary>As <see cref="Build(string, IReadOnlyList{ValueTuple{string, string}}, string, string?)"/>; with
    /// <paramref name="withImage"/> false no image placeholder is inserted (text-only chat).</summary>
    public static string Build(string template, IReadOnlyList<(string User, string Assistant)> history, string question, string? system, bool withImage)
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(history);
        ArgumentNullException.ThrowIfNull(question);
        var users = history.Select(h => h.User).Append(question).ToList();
        if (withImage) users[0] = ImagePlaceholder + "\n" + users[0];

        var prompt = new StringBuilder();
        switch (template)
        {
            case "phi" or "stablelm" or "qwen" or "openchat":
            {
                // SeparatorStyle.TWO: system + sep, then "ROLE: message" + seps[i % 2]; the open turn ends "ASSISTANT:".
                string endOfTurn = template == "openchat" ? "<|end_of_turn|>" : "<|endoftext|>";
                prompt.Append(system ?? DefaultSystem).Append(' ');
                for (int i = 0; i < history.Count; i++)
                    prompt.Append("USER: ").Append(users[i]).Append(' ').Append("ASSISTANT: ").Append(history[i].Assistant).Append(endOfTurn);
                prompt.Append("USER: ").Append(users[^1]).Append(' ').Append("ASSISTANT:");
                break;
            }
            case "plain":
            {
                // SeparatorStyle.PLAIN with sep "\n": messages are concatenated, each followed by "\n". The
                // reference has no second separator (sep2 is None), so history turns also end in "\n".
                prompt.Append(system ?? "");
                for (int i = 0; i < history.Count; i++)
                    prompt.Append(users[i]).Append('\n').Append(history[i].Assistant).Append('\n');
                prompt.Append(users[^1]).Append('\n');
                break;
            }
            case "mistral_instruct_system" or "mistral_instruct":
            {
                // CuMo's SeparatorStyle.LLAMA_2 with sep "" and sep2 "</s>": "<s>" only before the first [INST].
                // mistral_instruct has no system prompt: Mistral's own chat format has no place for one.
                if (template == "mistral_instruct" && !string.IsNullOrEmpty(system))
                    throw new ArgumentException("the mistral_instruct template has no system prompt; put the instructions into the question", nameof(system));
                string sys = template == "mistral_instruct" ? "" : system ?? DefaultSystem;
                string first = (sys.Length > 0 ? "<<SYS>>\n" + sys + "\n<</SYS>>\n\n" : "") + users[0];
                prompt.Append("<s>[INST] ").Append(first).Append(" [/INST]");
                for (int i = 0; i < history.Count; i++)
                    prompt.Append(' ').Append(history[i].Assistant).Append(" </s>").Append("[INST] ").Append(users[i + 1]).Append(" [/INST]");
                break;
            }
            default:
                throw new ArgumentException($"unknown prompt template \"{template}\"; expected one of: {string.Join(", ", Names)}", nameof(template));
        }
        return prompt.ToString();
    }

    /// <summary>Strings that end the assistant's turn (generation stops when the output contains one).</summary>
    public static IReadOnlyList<string> StopStrings(string template) => template switch
    {
        "phi" or "stablelm" or "qwen" => ["<|endoftext|>"],
        "openchat" => ["<|end_of_turn|>"],
        "mistral_instruct_system" or "mistral_instruct" => ["</s>"],
        "plain" => ["\n"],
        _ => throw new ArgumentException($"unknown prompt template \"{template}\"; expected one of: {string.Join(", ", Names)}", nameof(template)),
    };
}
