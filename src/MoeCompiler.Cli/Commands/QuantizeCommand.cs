using System.CommandLine;
using System.Diagnostics;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace MoeCompiler.Cli.Commands;

/// <summary>`moe quantize`: writes an int8 or q4 copy of a checkpoint folder, tensor by tensor (docs/quantization.md).</summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var variant = new Argument<string>("variant") { Description = "The variant whose weights these are (see 'moe list')." };
        var weights = new Option<string>("--weights", "-w") { Description = "Source checkpoint folder (safetensors or pytorch_model*.bin).", Required = true };
        var output = new Option<string>("--out", "-o") { Description = "Folder to create (must not exist, or be empty).", Required = true };
        var type = QuantizationTypeOption("--type", "int8 or q4.", required: true);
        var embeddings = new Option<string>("--embeddings")
        {
            Description = "Token embedding and lm_head: int8 (default), q4, or keep (as stored).",
            DefaultValueFactory = _ => "int8",
        };
        var tower = new Option<string?>("--tower")
        {
            Description = "Vision tower and projector: int8, q4, or keep (as stored). Default: keep for --type int8, int8 for --type q4.",
        };
        var shard = new Option<int>("--shard-gib") { Description = "Largest shard file, GiB.", DefaultValueFactory = _ => 4 };
        var command = new Command("quantize", "Write an int8 or 4-bit copy of a checkpoint that run, chat and bench load like any other.")
        {
            variant, weights, output, type, embeddings, tower, shard,
        };
        command.SetAction(parse =>
        {
            var entry = Variants.Resolve(parse.GetValue(variant)!);
            string source = parse.GetValue(weights)!, target = parse.GetValue(output)!;
            if (!Directory.Exists(source) && !File.Exists(source))
                throw new UserInputException($"weights not found: {source}");
            if (File.Exists(target)) throw new UserInputException($"{target}: is a file; --out names the folder to create");
            if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any())
                throw new UserInputException($"{target} exists and is not empty; refusing to overwrite anything there (choose a new folder)");
            if (parse.GetValue(shard) < 1) throw new UserInputException("--shard-gib must be at least 1");
            var options = new QuantizationOptions(WeightQuantizer.TypeOf(parse.GetValue(type)!.Value)!.Value)
            {
                EmbeddingType = ParseKeepOrType(parse.GetValue(embeddings)!, "--embeddings"),
            };
            if (parse.GetValue(tower) is { } towerText) options = options with { TowerType = ParseKeepOrType(towerText, "--tower") };
            var w = parse.InvocationConfiguration.Output;
            using var folder = CheckpointFolder.Open(source);
            long start = Stopwatch.GetTimestamp();
            var progress = new LineProgress(w, "quantize");
            var result = CheckpointQuantizer.Write(entry.Manifest, folder, target, options, (long)parse.GetValue(shard) << 30, progress);
            w.WriteLine($"wrote {result.Files.Count(f => f.EndsWith(".safetensors", StringComparison.Ordinal))} shard(s) to {target}: " +
                $"{result.QuantizedTensors} tensors {WeightQuantizer.Name(options.Type)}" +
                (options.EmbeddingType is { } e ? $" (embedding and lm_head {WeightQuantizer.Name(e)}" : " (embedding and lm_head kept") +
                (options.TowerType is { } t ? $", vision tower and projector {WeightQuantizer.Name(t)})" : ", vision tower and projector kept)") +
                $", {result.KeptTensors} kept; {Output.Bytes(result.SourceBytes)} → {Output.Bytes(result.WrittenBytes)} in {Stopwatch.GetElapsedTime(start).TotalSeconds:0.0} s" +
                (result.CopiedFiles.Count > 0 ? $"; copied {string.Join(", ", result.CopiedFiles)}" : ""));
            return ExitCodes.Success;
        });
        return command;
    }

    /// <summary>An int8|q4 option; bad text is a parse error (exit 2).</summary>
    internal static Option<DType?> QuantizationTypeOption(string name, string description, bool required) => new(name)
    {
        Description = description,
        HelpName = "int8|q4",
        Required = required,
        CustomParser = result =>
        {
            string text = result.Tokens.Count == 0 ? "" : result.Tokens[0].Value;
            if (WeightQuantizer.TryParse(text, out var parsed)) return WeightQuantizer.DTypeOf(parsed);
            result.AddError($"{name} must be int8 or q4, not '{text}'");
            return null;
        },
    };

    private static QuantizationType? ParseKeepOrType(string text, string option)
    {
        if (text.Equals("keep", StringComparison.OrdinalIgnoreCase) || text.Equals("none", StringComparison.OrdinalIgnoreCase)) return null;
        if (WeightQuantizer.TryParse(text, out var type)) return type;
        throw new UserInputException($"{option} must be int8, q4 or keep, not '{text}'");
    }

    /// <summary>A progress bar as text lines: one line per 5 % (logs and redirected output stay readable).</summary>
    private sealed class LineProgress(TextWriter writer, string what) : IProgress<BindProgress>
    {
        private int _lastShown = -1;

        public void Report(BindProgress value)
        {
            int percent = value.TensorsTotal == 0 ? 100 : (int)(100L * value.TensorsDone / value.TensorsTotal);
            if (percent / 5 == _lastShown / 5 && value.TensorsDone != value.TensorsTotal) return;
            _lastShown = percent;
            int filled = percent / 5;
            writer.WriteLine($"{what} [{new string('#', filled)}{new string('.', 20 - filled)}] {percent,3}% {value.TensorsDone}/{value.TensorsTotal} {value.Key}");
        }
    }
}
