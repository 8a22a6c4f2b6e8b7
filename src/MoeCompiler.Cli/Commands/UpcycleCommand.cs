using System.CommandLine;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Tooling;

namespace MoeCompiler.Cli.Commands;

/// <summary>`moe upcycle`: MoE-Tuning stage III initialisation from a dense checkpoint.</summary>
internal static class UpcycleCommand
{
    public static Command Create()
    {
        var dense = new Option<string>("--dense") { Description = "The dense (stage II) checkpoint folder.", Required = true };
        var variant = new Option<string>("--variant") { Description = "The MoE variant whose layout to write.", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "Folder for the MoE checkpoint (model.safetensors).", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the router initialisation.", DefaultValueFactory = _ => 0 };
        var command = new Command("upcycle", "Write a MoE checkpoint whose experts are copies of a dense model's FFNs, with fresh routers.")
        {
            dense, variant, output, seed,
        };
        command.SetAction(parse =>
        {
            var entry = Variants.Resolve(parse.GetValue(variant)!);
            if (entry.ModelDescription.MoeLayers.Length == 0)
                throw new UserInputException($"{entry.Name} is dense: upcycling needs a MoE variant");
            string outFolder = parse.GetValue(output)!;
            string file = Path.Combine(outFolder, "model.safetensors");
            if (File.Exists(outFolder)) throw new UserInputException($"{outFolder}: is a file, not a folder; --out names the folder to write the checkpoint in");
            if (File.Exists(file)) throw new UserInputException($"{file} exists; refusing to overwrite it");
            Directory.CreateDirectory(outFolder);
            using var folder = CheckpointFolder.Open(parse.GetValue(dense)!);
            var result = Upcycler.Upcycle(folder, entry.Manifest, entry.ModelDescription.MoeLayers, file,
                new UpcycleOptions { Seed = parse.GetValue(seed) });
            var w = parse.InvocationConfiguration.Output;
            w.WriteLine($"wrote {string.Join(", ", result.Files)}: {result.CopiedTensors} tensors copied, {result.ExpertTensors} expert tensors, {result.Routers} routers (seed {parse.GetValue(seed)})");
            if (result.UnusedDenseKeys.Count > 0)
                w.WriteLine($"dense tensors not used by {entry.Name}: {string.Join(", ", result.UnusedDenseKeys)}");
            return ExitCodes.Success;
        });
        return command;
    }
}
