using System.CommandLine;
using MoeCompiler.Models;
using Spectre.Console;

namespace MoeCompiler.Cli.Commands;

/// <summary>`moe list`: the variants compiled into the assembly.</summary>
internal static class ListCommand
{
    public static Command Create()
    {
        var json = CommonOptions.Json();
        var command = new Command("list", "List the variants compiled into this tool, with activated/total parameters and the layer map.") { json };
        command.SetAction(parse =>
        {
            var output = new Output(parse.InvocationConfiguration.Output, parse.GetValue(json));
            if (output.Json)
            {
                output.WriteJson(ModelCatalog.Variants.Select(v => new
                {
                    v.Name, v.DisplayName, v.TotalParameters, v.ActivatedParameters, v.LayerMap,
                    Family = v.ModelDescription.LlmFamily, Vision = v.ModelDescription.VisionTower,
                }));
                return ExitCodes.Success;
            }
            var table = new Table().Border(TableBorder.Rounded)
                .AddColumn("variant").AddColumn("family").AddColumn("vision")
                .AddColumn(new TableColumn("activated").RightAligned()).AddColumn(new TableColumn("total").RightAligned())
                .AddColumn("layers (M = MoE, D = dense)");
            foreach (var v in ModelCatalog.Variants)
                table.AddRow(Markup.Escape(v.Name), v.ModelDescription.LlmFamily, v.ModelDescription.VisionTower,
                    Output.Count(v.ActivatedParameters), Output.Count(v.TotalParameters), Markup.Escape(v.LayerMap));
            output.Console.Write(table);
            output.Console.WriteLine($"{ModelCatalog.Variants.Count} variants.");
            return ExitCodes.Success;
        });
        return command;
    }
}
