using System.Globalization;
using System.Text;
using MoeCompiler.Imaging;
using MoeCompiler.Runtime.Modules;

using MoeCompiler.Runtime.Checkpoints;

namespace MoeCompiler.Tooling;

/// <summary>
/// Draws the expert-load picture of the MoE-LLaVA paper (Figures 4 and 5): for every MoE layer one stacked bar
/// for text tokens and one for image tokens, each expert a colour, each bar summing to the whole.
/// The same layout is written as SVG (text as text) and as a raster image (labels in a built-in bitmap font).
/// </summary>
public static class ExpertLoadChart
{
    private const int BarWidth = 14, BarGap = 4, LayerGap = 14, PlotHeight = 240;
    private const int Left = 56, Top = 48, Bottom = 44, Right = 24, LegendHeight = 24;

    private static readonly (byte R, byte G, byte B)[] Palette =
    {
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
        (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127),
    };

    public static (int Width, int Height) Size(IReadOnlyList<ExpertLoad> layers)
    {
        int width = Left + Right + Math.Max(1, layers.Count) * (2 * BarWidth + BarGap + LayerGap);
        return (Math.Max(width, 360), Top + PlotHeight + Bottom + LegendHeight);
    }

    public static string ToSvg(string title, IReadOnlyList<ExpertLoad> layers)
    {
        var (width, height) = Size(layers);
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture,
            $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n");
        svg.Append(CultureInfo.InvariantCulture, $"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{Left}\" y=\"20\" font-size=\"14\">{Escape(title)}</text>\n");
        foreach (var bar in Bars(layers))
        {
            var c = Palette[bar.Expert % Palette.Length];
            svg.Append(CultureInfo.InvariantCulture,
                $"<rect x=\"{bar.X}\" y=\"{bar.Y}\" width=\"{bar.Width}\" height=\"{bar.Height}\" fill=\"rgb({c.R},{c.G},{c.B})\"><title>{Escape(bar.Tooltip)}</title></rect>\n");
        }
        for (int i = 0; i < layers.Count; i++)
        {
            int x = LayerX(i);
            svg.Append(CultureInfo.InvariantCulture,
                $"<text x=\"{x + BarWidth}\" y=\"{Top + PlotHeight + 14}\" text-anchor=\"middle\">{layers[i].Layer}</text>\n");
            svg.Append(CultureInfo.InvariantCulture,
                $"<text x=\"{x + BarWidth / 2}\" y=\"{Top + PlotHeight + 26}\" text-anchor=\"middle\" font-size=\"8\">T</text>\n");
            svg.Append(CultureInfo.InvariantCulture,
                $"<text x=\"{x + BarWidth + BarGap + BarWidth / 2}\" y=\"{Top + PlotHeight + 26}\" text-anchor=\"middle\" font-size=\"8\">I</text>\n");
        }
        svg.Append(CultureInfo.InvariantCulture,
            $"<text x=\"{Left - 8}\" y=\"{Top + 4}\" text-anchor=\"end\">100%</text><text x=\"{Left - 8}\" y=\"{Top + PlotHeight}\" text-anchor=\"end\">0%</text>\n");
        svg.Append(CultureInfo.InvariantCulture,
            $"<text x=\"{Left}\" y=\"{Top + PlotHeight + 40}\">MoE layer (T = text tokens, I = image tokens)</text>\n");
        int experts = ExpertCount(layers);
        for (int e = 0; e < experts; e++)
        {
            var c = Palette[e % Palette.Length];
            int x = Left + e * 80, y = height - 16;
            svg.Append(CultureInfo.InvariantCulture,
                $"<rect x=\"{x}\" y=\"{y - 9}\" width=\"10\" height=\"10\" fill=\"rgb({c.R},{c.G},{c.B})\"/><text x=\"{x + 14}\" y=\"{y}\">expert {e}</text>\n");
        }
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    public static RgbImage ToImage(string title, IReadOnlyList<ExpertLoad> layers)
    {
        var (width, height) = Size(layers);
        var canvas = new Canvas(width, height);
        canvas.Fill(0, 0, width, height, (255, 255, 255));
        BitmapFont.Draw(canvas, Left, 12, title.ToUpperInvariant(), (0, 0, 0));
        foreach (var bar in Bars(layers)) canvas.Fill(bar.X, bar.Y, bar.Width, bar.Height, Palette[bar.Expert % Palette.Length]);
        canvas.Fill(Left - 3, Top, 1, PlotHeight, (0, 0, 0));
        canvas.Fill(Left - 3, Top + PlotHeight, width - Left - Right + 3, 1, (0, 0, 0));
        BitmapFont.Draw(canvas, 8, Top, "100%", (0, 0, 0));
        BitmapFont.Draw(canvas, 8, Top + PlotHeight - 7, "0%", (0, 0, 0));
        for (int i = 0; i < layers.Count; i++)
            BitmapFont.Draw(canvas, LayerX(i) + 4, Top + PlotHeight + 6, layers[i].Layer.ToString(CultureInfo.InvariantCulture), (0, 0, 0));
        int experts = ExpertCount(layers);
        for (int e = 0; e < experts; e++)
        {
            int x = Left + e * 80, y = height - 20;
            canvas.Fill(x, y, 10, 10, Palette[e % Palette.Length]);
            BitmapFont.Draw(canvas, x + 14, y + 2, "E" + e.ToString(CultureInfo.InvariantCulture), (0, 0, 0));
        }
        return canvas.ToImage();
    }

    private readonly record struct Bar(int X, int Y, int Width, int Height, int Expert, string Tooltip);

    private static int LayerX(int index) => Left + index * (2 * BarWidth + BarGap + LayerGap);

    private static int ExpertCount(IReadOnlyList<ExpertLoad> layers)
    {
        int n = 0;
        foreach (var l in layers) n = Math.Max(n, l.Experts);
        return n;
    }

    private static IEnumerable<Bar> Bars(IReadOnlyList<ExpertLoad> layers)
    {
        for (int i = 0; i < layers.Count; i++)
        {
            foreach (var (shares, offset, kind) in new[] { (layers[i].TextShare, 0, "text"), (layers[i].ImageShare, BarWidth + BarGap, "image") })
            {
                double total = 0;
                foreach (double s in shares) total += Math.Max(0, s);
                if (total <= 0) continue;
                // Cumulative rounding so the segments of one bar tile the plot height exactly.
                double cumulative = 0;
                int previousEdge = 0;
                for (int e = 0; e < shares.Length; e++)
                {
                    cumulative += Math.Max(0, shares[e]) / total;
                    int edge = (int)Math.Round(cumulative * PlotHeight);
                    int h = edge - previousEdge;
                    if (h > 0)
                    {
                        string tip = string.Format(CultureInfo.InvariantCulture, "{0} layer {1}, {2} tokens, expert {3}: {4:0.0}%",
                            layers[i].Site, layers[i].Layer, kind, e, 100 * shares[e] / total);
                        yield return new Bar(LayerX(i) + offset, Top + PlotHeight - edge, BarWidth, h, e, tip);
                    }
                    previousEdge = edge;
                }
            }
        }
    }

    private static string Escape(string s) =>
        s.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal)
         .Replace(">", "&gt;", StringComparison.Ordinal).Replace("\"", "&quot;", StringComparison.Ordinal);

    internal sealed class Canvas
    {
        private readonly byte[] _pixels;

        public Canvas(int width, int height)
        {
            Width = width;
            Height = height;
            _pixels = new byte[width * height * 3];
        }

        public int Width { get; }
        public int Height { get; }

        public void Fill(int x, int y, int w, int h, (byte R, byte G, byte B) c)
        {
            int x0 = Math.Max(0, x), y0 = Math.Max(0, y), x1 = Math.Min(Width, x + w), y1 = Math.Min(Height, y + h);
            for (int yy = y0; yy < y1; yy++)
                for (int xx = x0; xx < x1; xx++)
                {
                    int o = (yy * Width + xx) * 3;
                    _pixels[o] = c.R;
                    _pixels[o + 1] = c.G;
                    _pixels[o + 2] = c.B;
                }
        }

        public RgbImage ToImage() => new(Width, Height, _pixels);
    }

    /// <summary>A 5×7 bitmap font for digits, capitals and a few signs: enough for axis labels.</summary>
    internal static class BitmapFont
    {
        private static readonly Dictionary<char, string[]> Glyphs = Build();

        public static void Draw(Canvas canvas, int x, int y, string text, (byte R, byte G, byte B) color)
        {
            foreach (char ch in text)
            {
                if (Glyphs.TryGetValue(ch, out var rows))
                    for (int r = 0; r < 7; r++)
                        for (int c = 0; c < 5; c++)
                            if (rows[r][c] == '#') canvas.Fill(x + c, y + r, 1, 1, color);
                x += 6;
            }
        }

        private static Dictionary<char, string[]> Build()
        {
            // Each glyph: 7 rows of 5 columns, '#' = ink.
            const string data =
                "0 .###. #...# #..## #.#.# ##..# #...# .###.|1 ..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.|" +
                "2 .###. #...# ....# ...#. ..#.. .#... #####|3 ####. ....# ....# .###. ....# ....# ####.|" +
                "4 ...#. ..##. .#.#. #..#. ##### ...#. ...#.|5 ##### #.... ####. ....# ....# #...# .###.|" +
                "6 .###. #.... #.... ####. #...# #...# .###.|7 ##### ....# ...#. ..#.. .#... .#... .#...|" +
                "8 .###. #...# #...# .###. #...# #...# .###.|9 .###. #...# #...# .#### ....# ....# .###.|" +
                "A .###. #...# #...# ##### #...# #...# #...#|B ####. #...# #...# ####. #...# #...# ####.|" +
                "C .###. #...# #.... #.... #.... #...# .###.|D ####. #...# #...# #...# #...# #...# ####.|" +
                "E ##### #.... #.... ####. #.... #.... #####|F ##### #.... #.... ####. #.... #.... #....|" +
                "G .###. #...# #.... #.### #...# #...# .####|H #...# #...# #...# ##### #...# #...# #...#|" +
                "I .###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.|J ..### ...#. ...#. ...#. ...#. #..#. .##..|" +
                "K #...# #..#. #.#.. ##... #.#.. #..#. #...#|L #.... #.... #.... #.... #.... #.... #####|" +
                "M #...# ##.## #.#.# #.#.# #...# #...# #...#|N #...# #...# ##..# #.#.# #..## #...# #...#|" +
                "O .###. #...# #...# #...# #...# #...# .###.|P ####. #...# #...# ####. #.... #.... #....|" +
                "Q .###. #...# #...# #...# #.#.# #..#. .##.#|R ####. #...# #...# ####. #.#.. #..#. #...#|" +
                "S .#### #.... #.... .###. ....# ....# ####.|T ##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..|" +
                "U #...# #...# #...# #...# #...# #...# .###.|V #...# #...# #...# #...# #...# .#.#. ..#..|" +
                "W #...# #...# #...# #.#.# #.#.# #.#.# .#.#.|X #...# #...# .#.#. ..#.. .#.#. #...# #...#|" +
                "Y #...# #...# .#.#. ..#.. ..#.. ..#.. ..#..|Z ##### ....# ...#. ..#.. .#... #.... #####|" +
                "% ##..# ##..# ...#. ..#.. .#... #..## #..##|- ..... ..... ..... ##### ..... ..... .....|" +
                ". ..... ..... ..... ..... ..... .##.. .##..|: ..... .##.. .##.. ..... .##.. .##.. .....|" +
                "( ...#. ..#.. .#... .#... .#... ..#.. ...#.|) .#... ..#.. ...#. ...#. ...#. ..#.. .#...|" +
                "_ ..... ..... ..... ..... ..... ..... #####|/ ....# ....# ...#. ..#.. .#... #.... #....";
            var glyphs = new Dictionary<char, string[]>();
            foreach (string entry in data.Split('|'))
            {
                var parts = entry.Split(' ');
                glyphs[parts[0][0]] = parts[1..];
            }
            return glyphs;
        }
    }
}
