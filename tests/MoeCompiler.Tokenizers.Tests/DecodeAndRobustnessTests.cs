using System.Text;
using System.Text.Json;
using MoeCompiler.Tokenizers.Normalization;

namespace MoeCompiler.Tokenizers.Tests;

public class DecodeAndRobustnessTests
{
    public static TheoryData<string> AllKinds => new() { "qwen", "arcade100k", "gpt2", "phi2", "sentencepiece", "openchat" };

    private static readonly string[] Pools =
    [
        "abcdefghijklmnopqrstuvwxyz", "ABCXYZ", "0123456789", " ", "   ", "\t", "\n", "\r\n", "'", ".,;:!?()[]{}<>|",
        "\u00e9\u00fc\u00df\u00c5", "\u0430\u0431\u0416", "\u4e00\u4f60\u597d\u4e16\u754c", "\u3042\u30a2", "\ud55c\uad6d",
        "\u0627\u0644", "\u0301\u0308", "\u3000\u00a0", "\u0663\u2167\u00bd", "\ud83e\udd99\ud83d\ude00\u2705\ufe0f",
        "\ud835\udc00\ud840\udc00", "\u2581", "\u0915\u093f",
    ];

    private static string RandomText(Random random, int maxLength)
    {
        var builder = new StringBuilder();
        int length = random.Next(1, maxLength);
        for (int i = 0; i < length; i++)
        {
            string pool = Pools[random.Next(Pools.Length)];
            int at = random.Next(pool.Length);
            if (char.IsLowSurrogate(pool[at])) at--;
            builder.Append(pool, at, char.IsHighSurrogate(pool[at]) ? 2 : 1);
        }
        return builder.ToString();
    }

    [Theory]
    [MemberData(nameof(AllKinds))]
    public void RandomUnicodeRoundTrips(string kind)
    {
        var tokenizer = (TokenizerBase)TestSupport.Kind(kind);
        var random = new Random(kind.Length * 7919);
        for (int n = 0; n < 300; n++)
        {
            string text = RandomText(random, 60);
            string expected = tokenizer.NormalizesNfc ? Nfc.Normalize(text) : text;
            // SentencePiece writes spaces as U+2581, so a U+2581 in the input comes back as a space.
            if (tokenizer is SentencePieceBpeTokenizer) expected = expected.Replace('\u2581', ' ');
            int[] ids = tokenizer.Encode(text);
            Assert.All(ids, id => Assert.InRange(id, 0, tokenizer.VocabSize - 1));
            Assert.Equal(expected, tokenizer.Decode(ids, skipSpecial: false));
        }
    }

    [Theory]
    [MemberData(nameof(AllKinds))]
    public void StreamingDecodeNeverEmitsBrokenCharactersAndMatchesDecode(string kind)
    {
        ITokenizer tokenizer = TestSupport.Kind(kind);
        var random = new Random(kind.Length * 104729);
        for (int n = 0; n < 200; n++)
        {
            string text = RandomText(random, 40);
            int[] ids = tokenizer.Encode(text);
            StreamingDecoder decoder = tokenizer.CreateStreamingDecoder();
            var streamed = new StringBuilder();
            foreach (int id in ids)
            {
                string piece = decoder.Push(id);
                Assert.DoesNotContain('\uFFFD', piece);
                Assert.False(piece.Length > 0 && char.IsHighSurrogate(piece[^1]), "split surrogate pair");
                streamed.Append(piece);
            }
            streamed.Append(decoder.Flush());
            Assert.Equal(tokenizer.Decode(ids), streamed.ToString());
        }
    }

    [Theory]
    [MemberData(nameof(AllKinds))]
    public void StreamingDecodeOfArbitraryIdsEqualsDecode(string kind)
    {
        // Random ids produce invalid UTF-8 at random places: the stream must still equal the batch decode.
        ITokenizer tokenizer = TestSupport.Kind(kind);
        var random = new Random(31337 + kind.Length);
        for (int n = 0; n < 200; n++)
        {
            int[] ids = Enumerable.Range(0, random.Next(1, 12)).Select(_ => random.Next(tokenizer.VocabSize)).ToArray();
            foreach (bool skip in new[] { true, false })
            {
                StreamingDecoder decoder = tokenizer.CreateStreamingDecoder(skip);
                string streamed = string.Concat(ids.Select(decoder.Push)) + decoder.Flush();
                Assert.Equal(tokenizer.Decode(ids, skip), streamed);
            }
        }
    }

    // A character that the vocabulary has no single token for, so its UTF-8 bytes span several tokens.
    private static (string Text, int[] Ids) SplitCharacter(ITokenizer tokenizer)
    {
        foreach (string candidate in new[] { "\ud840\udc01", "\ud83e\udea8", "\ud800\udf30", "\u2fd5" })
        {
            int[] ids = tokenizer.Encode(candidate);
            if (ids.Length > 1) return (candidate, ids);
        }
        throw new InvalidOperationException("no candidate character is split over tokens");
    }

    [Theory]
    [MemberData(nameof(AllKinds))]
    public void MultiByteCharacterSplitOverTokensIsHeldBack(string kind)
    {
        ITokenizer tokenizer = TestSupport.Kind(kind);
        var (text, ids) = SplitCharacter(tokenizer);
        StreamingDecoder decoder = tokenizer.CreateStreamingDecoder();
        string before = string.Concat(ids[..^1].Select(decoder.Push));
        Assert.DoesNotContain(text, before);
        Assert.DoesNotContain('\uFFFD', before);
        Assert.EndsWith(text, before + decoder.Push(ids[^1]));
        Assert.Equal("", decoder.Flush());
    }

    [Fact]
    public void UnfinishedCharacterAtFlushBecomesReplacementCharacter()
    {
        ITokenizer qwen = TestSupport.Kind("qwen");
        var (_, ids) = SplitCharacter(qwen);
        StreamingDecoder decoder = qwen.CreateStreamingDecoder();
        decoder.Push(ids[0]);
        Assert.Equal("\uFFFD", decoder.Flush());
    }

    [Fact]
    public void ConcurrentEncodingGivesTheSameIdsAsSequential()
    {
        // The piece cache is shared between threads; results must not depend on interleaving.
        ITokenizer qwen = TestSupport.Kind("qwen");
        var random = new Random(5);
        string[] texts = Enumerable.Range(0, 400).Select(_ => RandomText(random, 50)).ToArray();
        var parallel = new int[texts.Length][];
        Parallel.For(0, texts.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => parallel[i] = qwen.Encode(texts[i]));
        ITokenizer fresh = TokenizerLoader.ForKind("qwen");
        for (int i = 0; i < texts.Length; i++) Assert.Equal(fresh.Encode(texts[i]), parallel[i]);
    }

    [Theory]
    [MemberData(nameof(AllKinds))]
    public void LoneSurrogatesAndOddInputDoNotThrow(string kind)
    {
        var tokenizer = (TokenizerBase)TestSupport.Kind(kind);
        Assert.Equal("a\uFFFDb\uFFFD", tokenizer.Decode(tokenizer.Encode("a\ud800b\udc00"), skipSpecial: false));
        Assert.Empty(tokenizer.Encode(""));
        Assert.Equal("x\uFFFDy", tokenizer.Decode(tokenizer.EncodeUtf8([(byte)'x', 0xFF, (byte)'y']), skipSpecial: false));
        Assert.Equal("\uFFFD", tokenizer.Decode([-5]));
        Assert.Equal("\uFFFD", tokenizer.Decode([int.MaxValue]));
        Assert.Equal("\0\u0001", tokenizer.Decode(tokenizer.Encode("\0\u0001"), skipSpecial: false));
    }

    [Theory]
    [InlineData("qwen", "<|endoftext|>", 151643)]
    [InlineData("qwen", "<|im_end|>", 151645)]
    [InlineData("qwen", "<|extra_204|>", 151850)]
    [InlineData("arcade100k", "<|endoftext|>", 100257)]
    [InlineData("arcade100k", "<|endofprompt|>", 100276)]
    [InlineData("arcade100k", "<|im_start|>", 100277)]
    [InlineData("arcade100k", "<|extra0|>", 100288)]
    [InlineData("phi2", "<|endoftext|>", 50256)]
    [InlineData("gpt2", "<|endoftext|>", 50256)]
    [InlineData("sentencepiece", "</s>", 2)]
    [InlineData("openchat", "<|end_of_turn|>", 32000)]
    [InlineData("openchat", "<|pad_0|>", 32001)]
    public void SpecialTokensAreRecognisedOnlyWhenAllowed(string kind, string special, int id)
    {
        ITokenizer tokenizer = TestSupport.Kind(kind);
        Assert.Equal([id], tokenizer.Encode(special));
        Assert.True(tokenizer.IsSpecial(id));
        int[] plain = tokenizer.Encode(special, allowSpecial: false);
        Assert.DoesNotContain(id, plain);
        Assert.Equal(special, tokenizer.Decode(plain));
        Assert.Equal("ab", tokenizer.Decode([.. tokenizer.Encode("a"), id, .. tokenizer.Encode("b", allowSpecial: false)]).Replace(" ", ""));
        Assert.Contains(special, tokenizer.Decode([id], skipSpecial: false));
    }

    [Theory]
    [InlineData("qwen", 151851, null, 151643)]
    [InlineData("arcade100k", 100289, null, 100257)]
    [InlineData("phi2", 50295, null, 50256)]
    [InlineData("gpt2", 50257, null, 50256)]
    [InlineData("sentencepiece", 32000, 1, 2)]
    [InlineData("openchat", 32002, 1, 32000)]
    public void VocabularySizesAndBosEosMatchTheReference(string kind, int size, int? bos, int eos)
    {
        ITokenizer tokenizer = TestSupport.Kind(kind);
        Assert.Equal(size, tokenizer.VocabSize);
        Assert.Equal(bos, tokenizer.BosId);
        Assert.Equal([eos], tokenizer.EosIds);
    }

    [Fact]
    public void PhiWhitespaceRunsAreAddedTokensMatchedLongestFirst()
    {
        ITokenizer phi = TestSupport.Kind("phi2");
        Assert.Equal([50257], phi.Encode(new string(' ', 31)));
        Assert.Equal([50257, 50286], phi.Encode(new string(' ', 33)));
        Assert.Equal([50294], phi.Encode("\t\t"));
        Assert.False(phi.IsSpecial(50257));
        Assert.Equal(new string(' ', 31), phi.Decode([50257]));
        Assert.Equal([50257], phi.Encode(new string(' ', 31), allowSpecial: false)); // not special: always matched
    }

    [Fact]
    public void SentencePieceDecodeDropsTheDummyPrefixSpaceOnce()
    {
        ITokenizer sp = TestSupport.Kind("sentencepiece");
        int[] ids = sp.Encode("Hello world");
        Assert.Equal("Hello world", sp.Decode(ids));
        Assert.Equal("<s> Hello world", sp.Decode([1, .. ids], skipSpecial: false));
        Assert.Equal(" Hello", sp.Decode(sp.Encode(" Hello")));
        // @huggingface/tokenizers gives exactly this for [ids, </s>, ids] without skipping specials.
        Assert.Equal("Hello world</s> Hello world", sp.Decode([.. ids, 2, .. ids], skipSpecial: false));
    }

    private sealed record NfcRow(string Text, string Nfc);

    [Fact]
    public void NfcMatchesPythonUnicodedata()
    {
        var rows = File.ReadAllLines(TestSupport.TestData("nfc", "nfc.jsonl"))
            .Select(l => JsonSerializer.Deserialize<NfcRow>(l, new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!).ToList();
        Assert.Equal(400, rows.Count);
        Assert.Contains(rows, r => r.Text != r.Nfc);
        foreach (NfcRow row in rows) Assert.Equal(row.Nfc, Nfc.Normalize(row.Text));
        Assert.Equal("\u00e9", Nfc.Normalize("e\u0301"));
        Assert.Equal("\uac01", Nfc.Normalize("\u1100\u1161\u11a8"));
        Assert.Equal("plain ASCII stays the same object", Nfc.Normalize("plain ASCII stays the same object"));
    }
}
