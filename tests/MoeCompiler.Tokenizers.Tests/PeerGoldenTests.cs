using System.Text.Json;

namespace MoeCompiler.Tokenizers.Tests;

/// <summary>Ids committed from independent encoders (npm tiktoken, @huggingface/tokenizers, gpt-3-encoder, the
/// SentencePiece library); see TestData/peer/generate_goldens.mjs.</summary>
public class PeerGoldenTests
{
    private sealed record EncodeRow(string Text, int[] Ids);

    private sealed record PromptRow(string Template, string Tokenizer, string[][] History, string Question, string? System,
        string Prompt, bool AddBos, int[] Ids);

    private static readonly JsonSerializerOptions Json = new() { PropertyNameCaseInsensitive = true };

    private static List<T> ReadJsonl<T>(string file) =>
        File.ReadAllLines(TestSupport.TestData("peer", file))
            .Where(l => l.Length > 0)
            .Select(l => JsonSerializer.Deserialize<T>(l, Json)!)
            .ToList();

    [Theory]
    [InlineData("qwen")]
    [InlineData("arcade100k")]
    [InlineData("phi2")]
    [InlineData("gpt2")]
    [InlineData("sentencepiece")]
    [InlineData("openchat")]
    public void EncodesLikeThePeerEncoder(string kind)
    {
        var rows = ReadJsonl<EncodeRow>($"encode-{kind}.jsonl");
        Assert.True(rows.Count > 150);
        ITokenizer tokenizer = TestSupport.Kind(kind);
        var failures = rows.Where(r => !tokenizer.Encode(r.Text).SequenceEqual(r.Ids))
            .Select(r => $"{JsonSerializer.Serialize(r.Text)}: expected [{TestSupport.Show(r.Ids)}] got [{TestSupport.Show(tokenizer.Encode(r.Text))}]")
            .ToList();
        Assert.True(failures.Count == 0, $"{failures.Count} of {rows.Count} differ:\n" + string.Join("\n", failures.Take(20)));
    }

    [Fact]
    public void SentencePieceModelFileEncodesLikeTheSentencePieceLibrary()
    {
        var rows = ReadJsonl<EncodeRow>("encode-sentencepiece-model.jsonl");
        ITokenizer tokenizer = TokenizerLoader.FromFile(Path.Combine(TestSupport.DataDirectory, "mistral-sentencepiece.model"));
        var failures = rows.Where(r => !tokenizer.Encode(r.Text, allowSpecial: false).SequenceEqual(r.Ids))
            .Select(r => $"{JsonSerializer.Serialize(r.Text)}: expected [{TestSupport.Show(r.Ids)}] got [{TestSupport.Show(tokenizer.Encode(r.Text, false))}]")
            .ToList();
        Assert.True(failures.Count == 0, $"{failures.Count} of {rows.Count} differ:\n" + string.Join("\n", failures.Take(20)));
    }

    private static SentencePieceBpeTokenizer NonLegacyModel() =>
        ((SentencePieceBpeTokenizer)TokenizerLoader.FromFile(Path.Combine(TestSupport.DataDirectory, "mistral-sentencepiece.model"))).WithLegacy(false);

    [Fact]
    public void NonLegacySlowLlamaTokenizationMatchesThePortOverSentencePiece()
    {
        var rows = ReadJsonl<EncodeRow>("encode-sentencepiece-nonlegacy.jsonl");
        SentencePieceBpeTokenizer tokenizer = NonLegacyModel();
        Assert.False(tokenizer.Legacy);
        var failures = rows.Where(r => !tokenizer.Encode(r.Text).SequenceEqual(r.Ids))
            .Select(r => $"{JsonSerializer.Serialize(r.Text)}: expected [{TestSupport.Show(r.Ids)}] got [{TestSupport.Show(tokenizer.Encode(r.Text))}]")
            .ToList();
        Assert.True(failures.Count == 0, $"{failures.Count} of {rows.Count} differ:\n" + string.Join("\n", failures.Take(20)));
        // The modes differ exactly after special tokens: "[" has no "▁" prefix after "<s>" in non-legacy mode.
        Assert.NotEqual(TestSupport.Kind("sentencepiece").Encode("<s>[INST]"), tokenizer.Encode("<s>[INST]"));
    }

    [Fact]
    public void NonLegacyImagePromptsTokeniseLikeTheReference()
    {
        SentencePieceBpeTokenizer tokenizer = NonLegacyModel();
        var rows = ReadJsonl<PromptRow>("prompts-nonlegacy.jsonl");
        Assert.NotEmpty(rows);
        foreach (PromptRow row in rows)
        {
            int[] ids = ImagePromptTokenizer.Tokenize(tokenizer, row.Prompt, row.AddBos);
            Assert.True(row.Ids.SequenceEqual(ids), $"{row.Template}: expected [{TestSupport.Show(row.Ids)}]\n got [{TestSupport.Show(ids)}]");
        }
    }

    [Fact]
    public void PromptTemplatesBuildTheReferenceStrings()
    {
        var rows = ReadJsonl<PromptRow>("prompts.jsonl");
        Assert.Equal(PromptTemplates.Names.Count, rows.Select(r => r.Template).Distinct().Count());
        foreach (PromptRow row in rows)
        {
            var history = row.History.Select(h => (h[0], h[1])).ToList();
            Assert.Equal(row.Prompt, PromptTemplates.Build(row.Template, history, row.Question, row.System));
        }
    }

    [Fact]
    public void ImagePromptsTokeniseLikeTheReference()
    {
        foreach (PromptRow row in ReadJsonl<PromptRow>("prompts.jsonl"))
        {
            int[] ids = ImagePromptTokenizer.Tokenize(TestSupport.Kind(row.Tokenizer), row.Prompt, row.AddBos);
            Assert.True(row.Ids.SequenceEqual(ids), $"{row.Template}/{row.Tokenizer}: expected [{TestSupport.Show(row.Ids)}]\n got [{TestSupport.Show(ids)}]");
            Assert.Equal(1, ids.Count(id => id == ImagePromptTokenizer.ImageTokenId));
        }
    }
}
