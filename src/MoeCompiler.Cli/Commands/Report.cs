using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using Spectre.Console;

namespace MoeCompiler.Cli.Commands;

/// <summary>Timings and routing statistics of one answer, as a table or as JSON.</summary>
internal static class Report
{
    public static object Of(ModelSession session, VisionLanguageAnswer answer) => new
    {
        Variant = session.Variant.Name,
        Device = session.Loaded.Backend.Name,
        Weights = session.Loaded.CheckpointPath,
        VisionTower = session.Loaded.VisionTowerSource,
        Tokenizer = session.Loaded.TokenizerSource,
        answer.Text,
        answer.TokenIds,
        StopReason = answer.StopReason.ToString(),
        Timings = new
        {
            LoadSeconds = session.Loaded.LoadTime.TotalSeconds,
            ImagePreprocessingSeconds = answer.ImagePreprocessing.TotalSeconds,
            ImageEncodingSeconds = answer.Timings.ImageEncoding.TotalSeconds,
            PrefillSeconds = answer.Timings.Prefill.TotalSeconds,
            TimeToFirstTokenSeconds = answer.Timings.TimeToFirstToken.TotalSeconds,
            DecodeSeconds = answer.Timings.Decode.TotalSeconds,
            answer.Timings.PromptTokens,
            answer.Timings.ImageTokens,
            answer.Timings.GeneratedTokens,
            answer.Timings.DecodeTokensPerSecond,
        },
        Routing = answer.Routing.Layers.Select(l => new { l.Site, l.Layer, l.TextShare, l.ImageShare, l.TextTokens, l.ImageTokens }),
    };

    public static void WriteSummary(Output output, ModelSession session, VisionLanguageAnswer answer)
    {
        var t = answer.Timings;
        var console = output.Console;
        console.MarkupLine($"[grey]{Markup.Escape(DeviceLine(session))}[/]");
        console.MarkupLine($"[grey]{Markup.Escape(TokenizerLine(session))}[/]");
        if (VisionTowerLine(session) is { } tower) console.MarkupLine($"[grey]{Markup.Escape(tower)}[/]");
        console.MarkupLine($"[grey]stop: {answer.StopReason}; {t.PromptTokens} prompt tokens ({t.ImageTokens} image), {t.GeneratedTokens} generated[/]");
        console.MarkupLine($"[grey]load {Ms(session.Loaded.LoadTime)} · image {Ms(answer.ImagePreprocessing)} + encode {Ms(t.ImageEncoding)} · prefill {Ms(t.Prefill)} · " +
            $"first token after {Ms(t.TimeToFirstToken)} · decode {CommonOptions.Format(t.DecodeTokensPerSecond, "0.0")} tokens/s[/]");
        WriteRouting(output, answer.Routing);
    }

    /// <summary>"device: cpu" or "device: cuda:0 (NAME, sm_XX)": the backend that ran the model.</summary>
    public static string DeviceLine(ModelSession session) => "device: " + session.Loaded.Backend.Name;

    /// <summary>"tokenizer: FOLDER/tokenizer.model (with tokenizer_config.json)" or "tokenizer: bundled KIND".</summary>
    public static string TokenizerLine(ModelSession session) => "tokenizer: " + session.Loaded.TokenizerSource;

    /// <summary>"vision tower: FOLDER" (the model checkpoint or a separate tower's folder); null for a text-only variant.</summary>
    public static string? VisionTowerLine(ModelSession session) =>
        session.Loaded.VisionTowerSource is { } tower ? "vision tower: " + (tower == session.Loaded.CheckpointPath ? "from the model checkpoint" : tower) : null;

    public static void WriteRouting(Output output, RoutingStatistics routing)
    {
        if (routing.Layers.Count == 0) return;
        int experts = routing.Layers.Max(l => l.Experts);
        var table = new Table().Border(TableBorder.Rounded).Title("expert load (share of text | image tokens)").AddColumn("site").AddColumn("layer");
        for (int e = 0; e < experts; e++) table.AddColumn(new TableColumn($"expert {e}").RightAligned());
        foreach (var l in routing.Layers)
        {
            var cells = new List<string> { l.Site, l.Layer.ToString() };
            for (int e = 0; e < experts; e++)
                cells.Add(e < l.Experts ? $"{Percent(l.TextShare[e], l.TextTokens)} | {Percent(l.ImageShare[e], l.ImageTokens)}" : "");
            table.AddRow(cells.ToArray());
        }
        output.Console.Write(table);
    }

    private static string Percent(double share, long tokens) => tokens == 0 ? "-" : CommonOptions.Format(share * 100, "0") + "%";

    private static string Ms(TimeSpan t) => CommonOptions.Format(t.TotalMilliseconds, "0") + " ms";
}
