namespace MoeCompiler.Tokenizers;

/// <summary>A text tokenizer of one base model. Implementations are immutable after loading and safe to use
/// from several threads.</summary>
public interface ITokenizer
{
    /// <summary>Number of ids the tokenizer can produce (the reference's len(tokenizer)).</summary>
    int VocabSize { get; }

    /// <summary>The id the reference prepends to a prompt, or null when the model has none.</summary>
    int? BosId { get; }

    /// <summary>Ids that end generation.</summary>
    IReadOnlyList<int> EosIds { get; }

    /// <summary>Encodes text. No BOS is added. With <paramref name="allowSpecial"/> the special tokens' strings
    /// in the text (e.g. "&lt;|endoftext|&gt;") become their ids; otherwise they are encoded as plain text.
    /// Never throws on odd input: lone surrogates are encoded as U+FFFD. The one exception is a tokenizer.json whose
    /// own Split regex exceeds its match timeout on the text: <see cref="TokenizerLoadException"/> naming that file.</summary>
    int[] Encode(string text, bool allowSpecial = true);

    /// <summary>Decodes ids; invalid UTF-8 becomes U+FFFD and ids outside the vocabulary decode to U+FFFD.</summary>
    string Decode(ReadOnlySpan<int> ids, bool skipSpecial = true);

    bool IsSpecial(int id);

    /// <summary>A decoder for one stream of generated ids that only emits whole characters.</summary>
    StreamingDecoder CreateStreamingDecoder(bool skipSpecial = true);
}
