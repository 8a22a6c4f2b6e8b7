using System.Text.Json;
using MoeCompiler.Runtime.Generation;

namespace MoeCompiler.Inference.Tests.Parity;

/// <summary>The committed golden files are complete and consistent with each other (these run without the
/// generated variants).</summary>
public class GoldenDataTests
{
    public static TheoryData<string> Folders() => new(VariantLoader.Folders);

    [Theory]
    [MemberData(nameof(Folders))]
    public void GreedyIds_AreTheArgmaxOfTheStepLogitsBelowTheTokenizerSize(string folder)
    {
        var golden = Golden.Load(folder);
        int vocab = golden.StepLogitsShape[1];
        float[] steps = golden.StepLogits();
        var sampler = new Sampler(SamplingOptions.Greedy, tokenizerSize: 500);
        for (int i = 0; i < golden.GeneratedIds.Length; i++)
            Assert.Equal(golden.GeneratedIds[i], sampler.Next(steps.AsSpan(i * vocab, vocab)));
        // Row 0 of the steps is the last prefill row.
        float[] logits = golden.Logits();
        Assert.Equal(logits.AsSpan(logits.Length - vocab).ToArray(), steps.AsSpan(0, vocab).ToArray());
    }

    [Theory]
    [MemberData(nameof(Folders))]
    public void SpliceMask_RoutingAndCheckpointHeader_AreConsistent(string folder)
    {
        var golden = Golden.Load(folder);
        Assert.Equal(golden.LogitsShape[0], golden.IsImageToken.Length);
        if (golden.TextOnly)
        {
            // No image anywhere: no placeholder, no image rows, no pixel or feature files.
            Assert.Empty(golden.ImageFeaturesShape);
            Assert.DoesNotContain(PromptSplicer.ImageTokenId, golden.InputIds);
            Assert.DoesNotContain(true, golden.IsImageToken);
            Assert.Equal(golden.InputIds.Length, golden.IsImageToken.Length);
            Assert.False(File.Exists(Path.Combine(golden.Folder, "pixels.bin")));
            Assert.False(File.Exists(Path.Combine(golden.Folder, "image_features.bin")));
        }
        else
        {
            Assert.Equal(golden.ImageFeaturesShape[0], golden.IsImageToken.Count(b => b));
            Assert.Single(golden.InputIds, id => id == PromptSplicer.ImageTokenId);
            Assert.Equal(golden.InputIds.Length - 1 + golden.ImageFeaturesShape[0], golden.IsImageToken.Length);
        }

        // Only the LLM routes in a text-only golden.
        if (golden.TextOnly) Assert.All(golden.Routing, r => Assert.Equal("llm", r.Site));

        var prefill = golden.Routing.Where(r => r.Site == "llm" && r.Call == "prefill").ToList();
        Assert.NotEmpty(prefill);
        Assert.All(prefill, r => Assert.Equal(golden.IsImageToken.Length, r.Experts.Length));
        Assert.Equal(prefill.Count * (GoldenTokens - 1), golden.Routing.Count(r => r.Site == "llm" && r.Call == "decode"));
        foreach (var r in golden.Routing)
            foreach (var (experts, weights) in r.Experts.Zip(r.Weights))
            {
                Assert.Equal(experts.Length, experts.Distinct().Count());
                Assert.All(experts, e => Assert.InRange(e, 0, 3));
                Assert.All(weights, w => Assert.InRange(w, 0.0, 1.0));
            }

        // model.safetensors: an 8-byte little-endian header length, a JSON header, data sections that tile the file.
        using var file = File.OpenRead(golden.CheckpointPath);
        var lengthBytes = new byte[8];
        file.ReadExactly(lengthBytes);
        long headerLength = BitConverter.ToInt64(lengthBytes);
        var header = new byte[headerLength];
        file.ReadExactly(header);
        using var json = JsonDocument.Parse(header);
        long end = 0;
        foreach (var entry in json.RootElement.EnumerateObject().Where(e => e.Name != "__metadata__"))
        {
            Assert.Equal(golden.CheckpointDType, entry.Value.GetProperty("dtype").GetString());
            end = Math.Max(end, entry.Value.GetProperty("data_offsets")[1].GetInt64());
        }
        Assert.Equal(file.Length, 8 + headerLength + end);
    }

    private const int GoldenTokens = ParityTests.GeneratedTokens;
}
