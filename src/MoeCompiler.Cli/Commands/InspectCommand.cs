using System.CommandLine;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using Spectre.Console;

namespace MoeCompiler.Cli.Commands;

/// <summary>`moe inspect`: every layer, which are MoE, the tensor table and the memory needed per dtype.</summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var variant = new Argument<string>("variant") { Description = "A variant name (see 'moe list') or the spec file that defines it." };
        var json = CommonOptions.Json();
        var tensors = new Option<bool>("--tensors") { Description = "List every tensor (default: a summary per layer)." };
        var command = new Command("inspect", "Show a variant's layers, MoE placement, tensors and memory per dtype.") { variant, json, tensors };
        command.SetAction(parse =>
        {
            var entry = Variants.Resolve(parse.GetValue(variant)!);
            var output = new Output(parse.InvocationConfiguration.Output, parse.GetValue(json));
            var d = entry.ModelDescription;
            var manifest = entry.Manifest;
            var moe = new HashSet<int>(d.MoeLayers);
            long elements = manifest.TotalParameters;
            var memory = new (string DType, double Bytes)[]
            {
                ("f32", elements * 4.0), ("bf16", elements * 2.0), ("f16", elements * 2.0),
                ("int8 (+ per-row f32 scales)", elements + RowCount(manifest) * 4.0),
            };
            if (output.Json)
            {
                output.WriteJson(new
                {
                    entry.Name, entry.DisplayName, entry.Description,
                    entry.TotalParameters, entry.ActivatedParameters, entry.PaperTotalParameters, entry.PaperActivatedParameters,
                    Layers = Enumerable.Range(0, d.Layers).Select(i => new { Index = i, Kind = moe.Contains(i) ? "moe" : "dense" }),
                    d.Experts, d.TopK, d.VisionTower, d.ImageSize, d.ImageTokens,
                    Memory = memory.ToDictionary(m => m.DType, m => (long)m.Bytes),
                    Tensors = manifest.Entries.Select(e => new { e.Key, e.Shape, Role = e.Role.ToString(), Parameters = e.ElementCount }),
                });
                return ExitCodes.Success;
            }
            var console = output.Console;
            console.Write(new Rule($"[bold]{Markup.Escape(entry.DisplayName)}[/] ({Markup.Escape(entry.Name)})").LeftJustified());
            console.Write(new Text(entry.Description + "\n"));
            console.WriteLine();
            var facts = new Grid().AddColumn().AddColumn();
            void Fact(string name, string value) => facts.AddRow(new Text(name), new Text(value));
            Fact("LLM", $"{d.LlmFamily}: {d.Layers} layers, width {d.HiddenSize}, {d.Heads} heads ({d.KvHeads} kv), head dim {d.HeadDim}, vocab {d.VocabSize}");
            Fact("MoE", d.MoeLayers.Length == 0 ? "none (dense)" : $"{d.Experts} experts, top-{d.TopK}, layers {string.Join(",", d.MoeLayers)}");
            Fact("vision", d.VisionTower == "none" ? "none" : $"{d.VisionTower} {d.ImageSize}px, {d.ImageTokens} image tokens, scales [{string.Join(",", d.VisionScales)}]");
            Fact("tokenizer", $"{d.TokenizerKind} ({d.TokenizerSize} ids), template {d.PromptTemplate}");
            Fact("parameters", $"{entry.ActivatedParameters:N0} activated / {entry.TotalParameters:N0} total (paper formula: {Output.Count(entry.PaperActivatedParameters)} / {Output.Count(entry.PaperTotalParameters)})");
            console.Write(facts);
            console.WriteLine();
            console.WriteLine($"Layer map: {entry.LayerMap}");
            console.WriteLine();

            var table = new Table().Border(TableBorder.Rounded);
            if (parse.GetValue(tensors))
            {
                table.AddColumn("checkpoint key").AddColumn("shape").AddColumn("role").AddColumn(new TableColumn("parameters").RightAligned());
                foreach (var e in manifest.Entries)
                    table.AddRow(Markup.Escape(e.Key), Markup.Escape(Tensor.FormatShape(e.Shape)), e.Role.ToString(), e.ElementCount.ToString("N0"));
            }
            else
            {
                table.AddColumn("group").AddColumn(new TableColumn("tensors").RightAligned()).AddColumn(new TableColumn("parameters").RightAligned());
                foreach (var g in manifest.Entries.GroupBy(e => Group(e.Key)).OrderBy(g => g.Key, StringComparer.Ordinal))
                    table.AddRow(Markup.Escape(g.Key), g.Count().ToString(), g.Sum(e => e.ElementCount).ToString("N0"));
            }
            console.Write(table);
            var mem = new Table().Border(TableBorder.Rounded).AddColumn("weights as").AddColumn(new TableColumn("memory").RightAligned());
            foreach (var (dtype, bytes) in memory) mem.AddRow(dtype, Output.Bytes(bytes));
            console.Write(mem);
            return ExitCodes.Success;
        });
        return command;
    }

    private static long RowCount(WeightManifest manifest)
    {
        long rows = 0;
        foreach (var e in manifest.Entries) rows += e.Shape.Length >= 2 ? e.ElementCount / e.Shape[^1] : 0;
        return rows;
    }

    /// <summary>Groups keys by their layer: "layers.3", "h.3", "encoder.layers.3" …; the rest by their first parts.</summary>
    private static string Group(string key)
    {
        var parts = key.Split('.');
        for (int i = 0; i + 1 < parts.Length; i++)
            if (int.TryParse(parts[i + 1], out _) && parts[i] is "layers" or "h")
                return string.Join('.', parts, 0, i + 2);
        return parts.Length > 2 ? string.Join('.', parts, 0, parts.Length - 1) : key;
    }
}
