using System.CommandLine;
using MoeCompiler.Runtime.Generation;

namespace MoeCompiler.Cli.Commands;

/// <summary>
/// `moe chat`: an interactive multi-turn conversation. The reference templates put the image in the first user
/// turn, so an image starts a conversation: `/image PATH` begins a new one about that picture.
/// </summary>
internal static class ChatCommand
{
    /// <summary>Where chat reads the user's lines; tests replace it.</summary>
    internal static Func<TextReader> Input { get; set; } = () => Console.In;

    public static Command Create()
    {
        var variant = new Argument<string>("variant") { Description = "The variant (see 'moe list')." };
        var weights = new Option<string>("--weights", "-w") { Description = CommonOptions.WeightsDescription, Required = true };
        var image = new Option<string?>("--image", "-i") { Description = "A picture to talk about from the start." };
        var dtype = CommonOptions.WeightType();
        var device = CommonOptions.Device();
        var source = new CommonOptions.CheckpointSourceOptions();
        var generation = new GenerationOptionsBinder();
        var command = new Command("chat", "Chat with a variant about images (commands: /image PATH, /reset, /quit).") { variant, weights, image, dtype, device };
        source.AddTo(command);
        generation.AddTo(command);
        command.SetAction((parse, cancellation) =>
        {
            var entry = Variants.Resolve(parse.GetValue(variant)!);
            var writer = parse.InvocationConfiguration.Output;
            var options = generation.Bind(parse);
            Variants.EnsureTakesImages(entry, parse.GetValue(image) is null ? 0 : 1);
            using var session = ModelSession.Open(entry, parse.GetValue(weights)!, parse.GetValue(device)!, parse.GetValue(dtype), source.Bind(parse));
            var images = new List<string>();
            var history = new List<(string User, string Assistant)>();
            string? first = parse.GetValue(image);
            if (first is not null)
            {
                // the picture named on the command line is checked at once: a bad one ends the command (exit 2)
                if (MoeCompiler.IO.RegularFile.Problem(first, Imaging.ImageDecoder.MaxFileBytes, out _, out _) is { } problem)
                    throw new UserInputException($"{first}: {problem}");
                Attach(first, images, history, writer);
            }
            bool vision = entry.ModelDescription.HasVision;
            writer.WriteLine(vision
                ? $"Chatting with {entry.DisplayName}. /image PATH starts a conversation about a picture; /reset; /quit."
                : $"Chatting with {entry.DisplayName} (text-only). /reset; /quit.");
            writer.WriteLine(Report.DeviceLine(session));
            writer.WriteLine(Report.TokenizerLine(session));
            if (Report.VisionTowerLine(session) is { } towerLine) writer.WriteLine(towerLine);
            var input = Input();
            while (!cancellation.IsCancellationRequested)
            {
                writer.Write("you> ");
                writer.Flush();
                string? line = input.ReadLine();
                if (line is null) break;
                line = line.Trim();
                if (line.Length == 0) continue;
                if (line is "/quit" or "/exit") break;
                if (line == "/reset")
                {
                    images.Clear();
                    history.Clear();
                    writer.WriteLine("(new conversation)");
                    continue;
                }
                if (line.StartsWith("/image", StringComparison.Ordinal) && !vision)
                {
                    writer.WriteLine($"error: {entry.Name} is text-only: it takes no image");
                    continue;
                }
                if (line.StartsWith("/image", StringComparison.Ordinal))
                {
                    Attach(line["/image".Length..].Trim().Trim('"'), images, history, writer);
                    continue;
                }
                if (line.StartsWith('/'))
                {
                    writer.WriteLine($"unknown command {line.Split(' ')[0]}; commands: /image PATH, /reset, /quit");
                    continue;
                }
                writer.Write("assistant> ");
                try
                {
                    var answer = session.Loaded.Pipeline.Ask(images, line, new AskOptions { Generation = options, History = history.ToArray() },
                        text => { writer.Write(text); writer.Flush(); }, cancellation);
                    writer.WriteLine();
                    history.Add((line, answer.Text.Trim()));
                }
                catch (Exception e) when (e is not OperationCanceledException && CliErrors.TryDescribe(e, out string message, out int code) && code != ExitCodes.InternalError)
                {
                    writer.WriteLine();
                    writer.WriteLine($"error: {message}");
                }
            }
            return Task.FromResult(ExitCodes.Success);
        });
        return command;
    }

    private static void Attach(string path, List<string> images, List<(string, string)> history, TextWriter writer)
    {
        if (!File.Exists(path))
        {
            writer.WriteLine($"error: image not found: {path}");
            return;
        }
        if (MoeCompiler.IO.RegularFile.Problem(path, Imaging.ImageDecoder.MaxFileBytes, out _, out _) is { } problem)
        {
            writer.WriteLine($"error: {path}: {problem}");
            return;
        }
        images.Clear();
        images.Add(path);
        history.Clear();
        writer.WriteLine($"(new conversation about {Path.GetFileName(path)})");
    }
}
