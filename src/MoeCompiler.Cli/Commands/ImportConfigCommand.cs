using System.CommandLine;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Tooling;

namespace MoeCompiler.Cli.Commands;

/// <summary>`moe import-config`: a Hugging Face config.json (MoE-LLaVA, CuMo, LLaVA, Mixtral) to a spec file.</summary>
internal static class ImportConfigCommand
{
    public static Command Create()
    {
        var source = new Argument<string>("config") { Description = "A config.json, or the model folder that holds it." };
        var output = new Option<string?>("--out", "-o") { Description = "Spec file to write (default: print it). Never replaces an existing file." };
        var name = new Option<string?>("--name") { Description = "Variant name (a C# identifier); default: derived from the folder." };
        var command = new Command("import-config", "Turn a Hugging Face config.json into a MoeCompiler spec file.") { source, output, name };
        command.SetAction(parse =>
        {
            string path = parse.GetValue(source)!;
            if (!File.Exists(path) && !Directory.Exists(path)) throw new UserInputException($"not found: {path}");
            string spec = ConfigImporter.ImportSpecFromFolder(path, parse.GetValue(name));
            string? target = parse.GetValue(output);
            if (target is null)
            {
                parse.InvocationConfiguration.Output.Write(spec);
                return ExitCodes.Success;
            }
            if (File.Exists(target)) throw new UserInputException($"{target} exists; refusing to overwrite it");
            File.WriteAllText(target, spec);
            parse.InvocationConfiguration.Output.WriteLine($"wrote {target}: add it to modelspecs/ and build to get the typed variant");
            return ExitCodes.Success;
        });
        return command;
    }
}
