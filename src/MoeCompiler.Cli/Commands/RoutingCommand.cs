using System.CommandLine;
using MoeCompiler.Imaging;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Tooling;

namespace MoeCompiler.Cli.Commands;

/// <summary>`moe routing`: the expert-load picture (paper Figures 4 and 5) for one input, as PNG and SVG.</summary>
internal static class RoutingCommand
{
    public static Command Create()
    {
        var variant = new Argument<string>("variant") { Description = "A MoE variant (see 'moe list')." };
        var weights = new Option<string>("--weights", "-w") { Description = CommonOptions.WeightsDescription, Required = true };
        var image = new Option<string?>("--image", "-i") { Description = "Image file (required unless the variant is text-only)." };
        var prompt = new Option<string>("--prompt", "-p") { Description = "The question.", DefaultValueFactory = _ => "Describe the image in detail." };
        var output = new Option<string>("--out", "-o") { Description = "Output path without extension: writes OUT.png and OUT.svg.", DefaultValueFactory = _ => "routing" };
        var site = new Option<string>("--site") { Description = "Which MoE site to draw: llm, vision or projector.", DefaultValueFactory = _ => RoutingSites.Llm };
        var force = new Option<bool>("--force") { Description = "Replace existing output files." };
        var json = CommonOptions.Json();
        var dtype = CommonOptions.WeightType();
        var device = CommonOptions.Device();
        var source = new CommonOptions.CheckpointSourceOptions();
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens to generate (routing covers prompt and answer).", DefaultValueFactory = _ => 16 };
        var command = new Command("routing", "Draw how a run's tokens were spread over the experts of each MoE layer (PNG and SVG).")
        {
            variant, weights, image, prompt, output, site, force, json, dtype, device, maxTokens,
        };
        source.AddTo(command);
        command.SetAction((parse, cancellation) =>
        {
            var entry = Variants.Resolve(parse.GetValue(variant)!);
            if (entry.ModelDescription.MoeLayers.Length == 0 && entry.ModelDescription.VisionTower == "none")
                throw new UserInputException($"{entry.Name} has no MoE layers to draw");
            string basePath = parse.GetValue(output)!;
            string png = basePath + ".png", svg = basePath + ".svg";
            if (!parse.GetValue(force))
                foreach (string path in new[] { png, svg })
                    if (File.Exists(path)) throw new UserInputException($"{path} exists; pass --force to replace it");
            string? imagePath = parse.GetValue(image);
            Variants.EnsureTakesImages(entry, imagePath is null ? 0 : 1);
            if (imagePath is null && entry.ModelDescription.HasVision) throw new UserInputException($"{entry.Name} needs an image: give one with -i");
            if (imagePath is not null && !File.Exists(imagePath)) throw new UserInputException($"image not found: {imagePath}");
            using var session = ModelSession.Open(entry, parse.GetValue(weights)!, parse.GetValue(device)!, parse.GetValue(dtype), source.Bind(parse));
            var answer = session.Loaded.Pipeline.Ask(imagePath is null ? [] : [imagePath], parse.GetValue(prompt)!,
                new AskOptions { Generation = new GenerationOptions { MaxNewTokens = parse.GetValue(maxTokens) } }, null, cancellation);
            string chosenSite = parse.GetValue(site)!;
            var layers = answer.Routing.Layers.Where(l => l.Site == chosenSite).ToList();
            if (layers.Count == 0)
                throw new UserInputException($"{entry.Name} has no MoE layers at site '{chosenSite}'; sites with MoE: " +
                    string.Join(", ", answer.Routing.Layers.Select(l => l.Site).Distinct()));
            string title = $"{entry.Name} {chosenSite} expert load";
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(png))!);
            File.WriteAllBytes(png, PngEncoder.Encode(ExpertLoadChart.ToImage(title, layers)));
            File.WriteAllText(svg, ExpertLoadChart.ToSvg(title, layers));
            var o = new Output(parse.InvocationConfiguration.Output, parse.GetValue(json));
            if (o.Json) o.WriteJson(new { Png = png, Svg = svg, Layers = layers.Select(l => new { l.Site, l.Layer, l.TextShare, l.ImageShare }) });
            else
            {
                Report.WriteRouting(o, new RoutingStatistics(layers));
                o.Writer.WriteLine($"wrote {png} and {svg}");
            }
            return Task.FromResult(ExitCodes.Success);
        });
        return command;
    }
}
