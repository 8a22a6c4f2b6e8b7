using System.Text.RegularExpressions;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Tooling;

namespace MoeCompiler.Runtime.Tests.Routing;

public sealed class ExpertLoadChartTests
{
    private static ExpertLoad Load(int layer, long[] text, long[] image) =>
        new("llm", layer, text.Length, text.Sum(), image.Sum(), text, image, new long[text.Length], new long[text.Length], 0, 0);

    private static readonly ExpertLoad[] Layers =
    [
        Load(0, [10, 30, 0, 60], [25, 25, 25, 25]),
        Load(2, [1, 1, 1, 1], [0, 0, 0, 0]), // no image tokens: no image bar
    ];

    [Fact]
    public void SvgSegmentsAreProportionalToTheSharesAndTileEachBar()
    {
        string svg = ExpertLoadChart.ToSvg("test", Layers);
        var bars = Regex.Matches(svg, "<rect x=\"(\\d+)\" y=\"(\\d+)\" width=\"14\" height=\"(\\d+)\"[^>]*><title>([^<]*)</title>")
            .Select(m => (X: int.Parse(m.Groups[1].Value), Height: int.Parse(m.Groups[3].Value), Title: m.Groups[4].Value)).ToList();
        // Layer 0: 3 non-empty text segments + 4 image segments; layer 2: 4 text segments.
        Assert.Equal(11, bars.Count);
        foreach (var group in bars.GroupBy(b => b.X)) Assert.Equal(240, group.Sum(b => b.Height));
        var text0 = bars.Where(b => b.Title.StartsWith("llm layer 0, text", StringComparison.Ordinal)).ToList();
        Assert.Equal(new[] { 24, 72, 144 }, text0.Select(b => b.Height).ToArray()); // 10 %, 30 %, 60 % of 240
        Assert.Contains(bars, b => b.Title == "llm layer 0, text tokens, expert 3: 60.0%");
        Assert.DoesNotContain(bars, b => b.Title.StartsWith("llm layer 2, image", StringComparison.Ordinal));
    }

    [Fact]
    public void RasterHasTheSvgLayoutAndTheExpertColours()
    {
        var image = ExpertLoadChart.ToImage("test", Layers);
        var (width, height) = ExpertLoadChart.Size(Layers);
        Assert.Equal((width, height), (image.Width, image.Height));
        // The top segment of layer 0's text bar is expert 3 (60 %): palette colour 3, (214, 39, 40).
        int x = 56 + 7, y = 48 + 10;
        int o = (y * image.Width + x) * 3;
        Assert.Equal(new byte[] { 214, 39, 40 }, image.Pixels[o..(o + 3)]);
        // Background stays white outside the plot.
        Assert.Equal(new byte[] { 255, 255, 255 }, image.Pixels[..3]);
    }
}
