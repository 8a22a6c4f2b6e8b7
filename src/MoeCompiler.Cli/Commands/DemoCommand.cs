using System.CommandLine;
using System.Diagnostics;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cli.Commands;

/// <summary>
/// `moe demo`: the main job on a built-in default with no download. Takes the tiny demo variant compiled from
/// modelspecs/tiny-phi-chat.json, creates its weights (seeded, once, in a cache folder), and runs the bundled
/// picture and a question through it end to end: image decoding and preprocessing, the CLIP tower, the projector,
/// the MoE language model with its KV cache, the tokenizer. Random weights answer with random words: the
/// demo shows the machinery, timings and routing, not knowledge.
/// </summary>
internal static class DemoCommand
{
    public const string DefaultVariant = "TinyPhiChat";
    public const string DefaultQuestion = "What is in this picture?";

    public static Command Create()
    {
        var variant = new Option<string>("--variant") { Description = "Variant to run.", DefaultValueFactory = _ => DefaultVariant };
        var cache = new Option<string?>("--cache") { Description = "Folder for the generated weights (default: ~/.cache/moecompiler/demo)." };
        var prompt = new Option<string>("--prompt", "-p") { Description = "The question.", DefaultValueFactory = _ => DefaultQuestion };
        var image = new Option<string?>("--image", "-i") { Description = "Image file (default: the bundled picture)." };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Most new tokens.", DefaultValueFactory = _ => 24 };
        var json = CommonOptions.Json();
        var command = new Command("demo", "Create a tiny variant's weights and chat about a picture with it, end to end, offline.")
        {
            variant, cache, prompt, image, maxTokens, json,
        };
        command.SetAction((parse, cancellation) =>
        {
            var output = new Output(parse.InvocationConfiguration.Output, parse.GetValue(json));
            var entry = Variants.Resolve(parse.GetValue(variant)!);
            string folder = Path.Combine(parse.GetValue(cache) ?? DefaultCache(), entry.Name + "-seed42");
            void Say(string line)
            {
                if (!output.Json) output.Writer.WriteLine(line);
            }

            Say($"variant   {entry.DisplayName}: {Output.Count(entry.ActivatedParameters)} activated / {Output.Count(entry.TotalParameters)} parameters; layers {entry.LayerMap}");
            if (!File.Exists(Path.Combine(folder, "model.safetensors")))
            {
                var t = Stopwatch.StartNew();
                CreateWeightsCommand.Write(entry.Manifest, folder, seed: 42, DType.F32);
                Say($"weights   created {entry.Manifest.Entries.Count} tensors in {folder} ({t.ElapsedMilliseconds} ms)");
            }
            else Say($"weights   {folder}");

            Variants.EnsureTakesImages(entry, parse.GetValue(image) is null ? 0 : 1);
            // A text-only variant gets the question alone.
            string? imagePath = entry.ModelDescription.HasVision ? parse.GetValue(image) ?? BundledPicture(folder) : null;
            using var session = ModelSession.Open(entry, folder, "cpu", dtype: null);
            string question = parse.GetValue(prompt)!;
            Say($"image     {imagePath ?? "none (text-only variant)"}");
            Say($"question  {question}");
            if (!output.Json) output.Writer.Write("answer    ");
            var answer = session.Loaded.Pipeline.Ask(imagePath is null ? [] : [imagePath], question,
                new AskOptions { Generation = new GenerationOptions { MaxNewTokens = parse.GetValue(maxTokens) } },
                output.Json ? null : text => { output.Writer.Write(text.ReplaceLineEndings(" ")); output.Writer.Flush(); }, cancellation);
            if (output.Json)
            {
                output.WriteJson(Report.Of(session, answer));
                return Task.FromResult(ExitCodes.Success);
            }
            output.Writer.WriteLine();
            Say("(random weights: the words are noise; the pipeline, timings and routing are real)");
            Report.WriteSummary(output, session, answer);
            return Task.FromResult(ExitCodes.Success);
        });
        return command;
    }

    private static string DefaultCache()
    {
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        string root = !string.IsNullOrEmpty(xdg) ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "moecompiler", "demo");
    }

    /// <summary>The picture shipped inside the tool, written next to the weights so the pipeline can read it as a file.</summary>
    private static string BundledPicture(string folder)
    {
        string path = Path.Combine(folder, "demo.png");
        if (File.Exists(path)) return path;
        using var resource = typeof(DemoCommand).Assembly.GetManifestResourceStream("MoeCompiler.Cli.Assets.demo.png")
            ?? throw new InvalidOperationException("the bundled demo picture is missing from the tool");
        using var file = File.Create(path);
        resource.CopyTo(file);
        return path;
    }
}
