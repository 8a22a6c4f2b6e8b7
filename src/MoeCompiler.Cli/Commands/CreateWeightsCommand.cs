using System.CommandLine;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace MoeCompiler.Cli.Commands;

/// <summary>`moe create-weights`: seeded random weights for a variant, as a safetensors checkpoint folder.</summary>
internal static class CreateWeightsCommand
{
    public static Command Create()
    {
        var variant = new Argument<string>("variant") { Description = "The variant whose manifest to fill." };
        var output = new Option<string>("--out", "-o") { Description = "Folder to create (must not hold a checkpoint already).", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Random seed.", DefaultValueFactory = _ => 42 };
        var dtype = CommonOptions.WeightType();
        var init = new Option<string>("--init")
        {
            Description = "random: every weight and bias N(0, 0.02²) (default); hf: the families' Hugging Face init " +
                "(biases 0, Qwen's output projections scaled by 1/sqrt(2·layers), CLIP's own tower init).",
            DefaultValueFactory = _ => "random",
        };
        var command = new Command("create-weights", "Write seeded random weights for a variant (for trying the tools without a download).")
        {
            variant, output, seed, dtype, init,
        };
        command.SetAction(parse =>
        {
            var entry = Variants.Resolve(parse.GetValue(variant)!);
            string folder = parse.GetValue(output)!;
            var style = parse.GetValue(init)!.ToLowerInvariant() switch
            {
                "random" or "default" => InitStyle.Default,
                "hf" or "huggingface" => InitStyle.HuggingFace,
                var other => throw new UserInputException($"--init must be random or hf, not '{other}'"),
            };
            string file = Write(entry.Manifest, folder, parse.GetValue(seed), parse.GetValue(dtype) ?? DType.F32, style);
            parse.InvocationConfiguration.Output.WriteLine($"wrote {entry.Manifest.Entries.Count} tensors ({Output.Count(entry.Manifest.TotalParameters)} parameters) to {file}");
            return ExitCodes.Success;
        });
        return command;
    }

    /// <summary>Writes <c>model.safetensors</c> in <paramref name="folder"/>; never replaces an existing checkpoint.</summary>
    public static string Write(WeightManifest manifest, string folder, ulong seed, DType dtype, InitStyle init = InitStyle.Default)
    {
        if (dtype.IsQuantized())
            throw new UserInputException($"--dtype {dtype.SafetensorsName()}: create f32 or bf16 weights, then run 'moe quantize' on them");
        if (File.Exists(folder) || (!Directory.Exists(folder) && new FileInfo(folder).LinkTarget is not null))
            throw new UserInputException($"{folder}: is a file (or a link), not a folder; --out names the folder to create the checkpoint in");
        string file = Path.Combine(folder, "model.safetensors");
        if (File.Exists(file) || File.Exists(Path.Combine(folder, "model.safetensors.index.json")))
            throw new UserInputException($"{folder} already holds a checkpoint; choose another folder or delete it first");
        Directory.CreateDirectory(folder);
        RandomCheckpoint.Write(manifest, file, seed, dtype, init: init);
        return file;
    }
}
