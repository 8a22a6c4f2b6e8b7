using System.CommandLine;
using MoeCompiler.Runtime.Generation;
using Spectre.Console;

namespace MoeCompiler.Cli.Commands;

/// <summary>`moe run`: one image (or several, or none) and a prompt through a variant; the answer streams as it is
/// generated. A text-only variant takes the prompt alone.</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var variant = new Argument<string>("variant") { Description = "The variant (see 'moe list')." };
        var weights = new Option<string>("--weights", "-w") { Description = CommonOptions.WeightsDescription, Required = true };
        var images = new Option<string[]>("--image", "-i") { Description = "Image file(s): PNG, JPEG, BMP, PPM. Repeat for several; none for a text-only variant.", AllowMultipleArgumentsPerToken = true };
        var prompt = new Option<string>("--prompt", "-p") { Description = "The question.", Required = true };
        var json = CommonOptions.Json();
        var dtype = CommonOptions.WeightType();
        var device = CommonOptions.Device();
        var source = new CommonOptions.CheckpointSourceOptions();
        var generation = new GenerationOptionsBinder();
        var command = new Command("run", "Answer a prompt about an image with a compiled variant.") { variant, weights, images, prompt, json, dtype, device };
        source.AddTo(command);
        generation.AddTo(command);
        command.SetAction((parse, cancellation) =>
        {
            var entry = Variants.Resolve(parse.GetValue(variant)!);
            var output = new Output(parse.InvocationConfiguration.Output, parse.GetValue(json));
            var imagePaths = parse.GetValue(images) ?? [];
            Variants.EnsureTakesImages(entry, imagePaths.Length);
            foreach (string path in imagePaths)
                if (!File.Exists(path)) throw new UserInputException($"image not found: {path}");
            var options = new AskOptions { Generation = generation.Bind(parse) };
            using var session = ModelSession.Open(entry, parse.GetValue(weights)!, parse.GetValue(device)!, parse.GetValue(dtype), source.Bind(parse));
            var answer = session.Loaded.Pipeline.Ask(imagePaths, parse.GetValue(prompt)!, options,
                output.Json ? null : text => { output.Writer.Write(text); output.Writer.Flush(); }, cancellation);
            if (output.Json) output.WriteJson(Report.Of(session, answer));
            else
            {
                output.Writer.WriteLine();
                Report.WriteSummary(output, session, answer);
            }
            return Task.FromResult(ExitCodes.Success);
        });
        return command;
    }
}
