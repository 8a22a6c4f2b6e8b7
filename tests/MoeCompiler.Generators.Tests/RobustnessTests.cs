using MoeCompiler.Generators.Parsing;

namespace MoeCompiler.Generators.Tests;

/// <summary>Bad specs produce diagnostics, never exceptions.</summary>
public class RobustnessTests
{
    [Fact]
    public void RandomlyCorruptedSpecsNeverThrow()
    {
        var random = new Random(1234);
        const string alphabet = "{}[]:,\"0123456789-.eE truefalsnl\\\n";
        var sources = RepoPaths.ShippedSpecs().Take(6).Select(File.ReadAllText).ToArray();
        int withDiagnostics = 0;
        for (int i = 0; i < 600; i++)
        {
            var text = new System.Text.StringBuilder(sources[i % sources.Length]);
            for (int edits = 1 + random.Next(3); edits > 0; edits--)
            {
                int at = random.Next(text.Length);
                switch (random.Next(3))
                {
                    case 0: text.Remove(at, Math.Min(1 + random.Next(8), text.Length - at)); break;
                    case 1: text.Insert(at, alphabet[random.Next(alphabet.Length)]); break;
                    default: text[at] = alphabet[random.Next(alphabet.Length)]; break;
                }
            }

            var result = SpecParser.Parse("fuzz.json", text.ToString());
            Assert.True(result.Variant is not null ^ result.Diagnostics.Count > 0, "a spec either compiles or has diagnostics");
            if (result.Diagnostics.Count > 0) withDiagnostics++;
            foreach (var d in result.Diagnostics)
            {
                Assert.InRange(d.Position.Offset, 0, text.Length);
                Assert.InRange(d.Position.Offset + d.Position.Length, 0, text.Length);
                _ = d.ToDiagnostic().GetMessage(System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        Assert.True(withDiagnostics > 300, $"only {withDiagnostics} corrupted specs were rejected");
    }

    [Theory]
    [InlineData("\"layers\": 4,", "\"layers\": 100000,", "MOE006")]
    [InlineData("\"experts\": 4,", "\"experts\": 100000,", "MOE006")]
    [InlineData("\"vocabSize\": 512,", "\"vocabSize\": 99999999999,", "MOE006")]
    [InlineData("\"normEps\": 1e-5,", "\"normEps\": 1e999,", "MOE001")]
    public void AbsurdSizesAreDiagnosedNotGenerated(string from, string to, string id)
    {
        string text = File.ReadAllText(Path.Combine(RepoPaths.ModelSpecs, "tiny-stablelm-moe.json"));
        Assert.Contains(from, text, StringComparison.Ordinal);
        var result = SpecParser.Parse("big.json", text.Replace(from, to, StringComparison.Ordinal));
        Assert.Null(result.Variant);
        Assert.Contains(result.Diagnostics, d => d.DescriptorId == id);
    }
}
