using System.Buffers;
using Microsoft.ML.Tokenizers;
using MoeCompiler.Tokenizers.ML;

namespace MoeCompiler.Tokenizers.Tests;

/// <summary>Our tokenizers seen through Microsoft.ML.Tokenizers' <see cref="Tokenizer"/>: the same ids (ours, and the
/// Hugging Face reference's vectors), counts, decoding, offsets and truncation.</summary>
public class MlTokenizersAdapterTests
{
    private static readonly string[] Extra =
    [
        "", "aaaaaaaaaaaaaaaa", "!!!!!!!!", "     x", "hello<|endoftext|>world", "<s>[INST] hi [/INST]", "GPT4 end_of_turn<|end_of_turn|>",
        "日本語のテキスト", "emoji 🙂🙂 and e\u0301", "\n\n\t tabs\r\n",
    ];

    public static TheoryData<string, string> Vectors => new() { { "gpt2", "gpt2.out" }, { "phi2", "phi-2.out" }, { "qwen", "qwen2.out" } };

    [Theory]
    [MemberData(nameof(Vectors))]
    public void Ids_are_the_Hugging_Face_references_through_the_adapter(string kind, string file)
    {
        Tokenizer adapter = new MoeTokenizerAdapter(TestSupport.Kind(kind));
        var strings = TestSupport.VectorStrings();
        var expected = TestSupport.VectorIds(file);
        for (int i = 0; i < strings.Count; i++)
        {
            Assert.Equal(expected[i], adapter.EncodeToIds(strings[i]));
            Assert.Equal(expected[i].Length, adapter.CountTokens(strings[i]));
            Assert.Equal(strings[i], adapter.Decode(expected[i]));
        }
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("qwen")]
    [InlineData("phi2")]
    [InlineData("arcade100k")]
    [InlineData("sentencepiece")]
    [InlineData("openchat")]
    public void Every_kind_gives_our_ids_counts_and_text(string kind)
    {
        ITokenizer ours = TestSupport.Kind(kind);
        Tokenizer adapter = new MoeTokenizerAdapter(ours);
        foreach (string text in TestSupport.VectorStrings().Concat(Extra))
        {
            int[] ids = ours.Encode(text);
            Assert.Equal(ids, adapter.EncodeToIds(text));
            Assert.Equal(ids, adapter.EncodeToIds(text.AsSpan()));
            Assert.Equal(ids, adapter.EncodeToTokens(text, out _).Select(t => t.Id));
            Assert.Equal(ids.Length, adapter.CountTokens(text));
            Assert.Equal(ours.Decode(ids), adapter.Decode(ids));
        }
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("qwen")]
    public void Byte_level_offsets_cover_the_input_token_by_token(string kind)
    {
        Tokenizer adapter = new MoeTokenizerAdapter(TestSupport.Kind(kind));
        foreach (string input in TestSupport.VectorStrings().Concat(Extra))
        {
            var tokens = adapter.EncodeToTokens(input, out string? normalized);
            // Where the ids decode to other text (Qwen normalizes to NFC), the offsets index that text, which is reported.
            string roundTrip = TestSupport.Kind(kind).Decode(TestSupport.Kind(kind).Encode(input), skipSpecial: false);
            Assert.Equal(roundTrip == input ? null : roundTrip, normalized);
            string text = normalized ?? input;
            Assert.Equal(text, string.Concat(tokens.Select(t => t.Value)));
            int next = 0;
            foreach (var token in tokens)
            {
                Assert.Equal(next, token.Offset.Start.Value);
                Assert.Equal(token.Value, text[token.Offset]);
                next = token.Offset.End.Value;
            }
            Assert.Equal(text.Length, next);
        }
        adapter.EncodeToTokens("and e\u0301", out string? composed);
        Assert.Equal(kind == "qwen" ? "and \u00e9" : null, composed);
    }

    [Fact]
    public void Special_tokens_and_BOS_follow_the_settings()
    {
        ITokenizer qwen = TestSupport.Kind("qwen");
        const string text = "hi<|endoftext|>";
        Assert.Equal(qwen.Encode(text, allowSpecial: true), new MoeTokenizerAdapter(qwen).EncodeToIds(text));
        Assert.Equal(qwen.Encode(text, allowSpecial: false), new MoeTokenizerAdapter(qwen, allowSpecial: false).EncodeToIds(text));
        Assert.NotEqual(qwen.Encode(text, allowSpecial: true), qwen.Encode(text, allowSpecial: false));

        ITokenizer mistral = TestSupport.Kind("sentencepiece");
        int bos = Assert.IsType<int>(mistral.BosId);
        Assert.Equal([bos, .. mistral.Encode("Hello")], new MoeTokenizerAdapter(mistral, addBeginningOfSentence: true).EncodeToIds("Hello"));
    }

    [Fact]
    public void Truncation_keeps_the_first_tokens_and_says_how_much_text_they_cover()
    {
        ITokenizer gpt2 = TestSupport.Kind("gpt2");
        Tokenizer adapter = new MoeTokenizerAdapter(gpt2);
        const string text = "The quick brown fox jumps over the lazy dog.";
        int[] all = gpt2.Encode(text);
        var first = adapter.EncodeToIds(text, 3, out string? normalized, out int consumed);
        Assert.Equal(all[..3], first);
        Assert.Null(normalized);
        Assert.Equal(gpt2.Decode(all[..3]).Length, consumed);
        Assert.Equal(all[..3], gpt2.Encode(text[..consumed]));
        Assert.Equal(all, adapter.EncodeToIds(text, 1000, out _, out int everything));
        Assert.Equal(text.Length, everything);
    }

    [Fact]
    public void Decoding_into_a_span_stops_at_a_whole_token_when_it_is_full()
    {
        ITokenizer qwen = TestSupport.Kind("qwen");
        Tokenizer adapter = new MoeTokenizerAdapter(qwen);
        int[] ids = qwen.Encode("Hello, world! 日本語");
        string whole = qwen.Decode(ids);
        var big = new char[whole.Length];
        Assert.Equal(OperationStatus.Done, adapter.Decode(ids, big, out int used, out int written));
        Assert.Equal(ids.Length, used);
        Assert.Equal(whole, new string(big, 0, written));

        var small = new char[5];
        Assert.Equal(OperationStatus.DestinationTooSmall, adapter.Decode(ids, small, out used, out written));
        Assert.True(used < ids.Length);
        Assert.Equal(qwen.Decode(ids[..used]), new string(small, 0, written));
    }
}
