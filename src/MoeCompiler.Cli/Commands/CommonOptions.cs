using System.CommandLine;
using System.Globalization;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cli.Commands;

internal static class CommonOptions
{
    public static Option<bool> Json() => new("--json") { Description = "Write one JSON document for scripts instead of tables." };

    public static Option<DType?> WeightType() => new("--dtype")
    {
        Description = "Convert weights once at load: f32, bf16, f16; or quantise them at load: int8, q4 (see docs/quantization.md; default: use the checkpoint's dtype in place).",
        HelpName = "f32|bf16|f16|int8|q4",
        CustomParser = result =>
        {
            string text = result.Tokens.Count == 0 ? "" : result.Tokens[0].Value;
            switch (text.ToLowerInvariant())
            {
                case "f32": case "float32": case "fp32": return DType.F32;
                case "bf16": case "bfloat16": return DType.BF16;
                case "f16": case "float16": case "fp16": return DType.F16;
                default:
                    if (WeightQuantizer.TryParse(text, out var quantized)) return WeightQuantizer.DTypeOf(quantized);
                    result.AddError($"--dtype must be f32, bf16, f16, int8 or q4, not '{text}'");
                    return null;
            }
        },
    };

    public static Option<string> Device() => new("--device")
    {
        Description = "cpu (default) or cuda.",
        DefaultValueFactory = _ => "cpu",
    };

    /// <summary>--revision and --vision-tower: where the weights come from beyond the -w path.</summary>
    public sealed class CheckpointSourceOptions
    {
        public Option<string?> Revision { get; } = new("--revision")
        {
            Description = "Branch, tag or commit of a repository id given as -w, looked up in the Hugging Face hub cache (default: main).",
        };

        public Option<string?> VisionTower { get; } = new("--vision-tower")
        {
            Description = "The vision tower's own checkpoint (folder or ORG/NAME in the hub cache, e.g. openai/clip-vit-large-patch14-336), " +
                "used instead of a copy inside the model checkpoint (default: that copy; without one, the tower config.json names, from the hub cache).",
            HelpName = "DIR|ORG/NAME",
        };

        public void AddTo(Command command)
        {
            command.Options.Add(Revision);
            command.Options.Add(VisionTower);
        }

        public ModelLoadOptions Bind(ParseResult parse) => new() { Revision = parse.GetValue(Revision), VisionTower = parse.GetValue(VisionTower) };
    }

    public const string WeightsDescription = "Checkpoint folder (safetensors or pytorch_model*.bin) or a repository id ORG/NAME in the Hugging Face hub cache.";

    public static string Format(double value, string format = "0.00") => value.ToString(format, CultureInfo.InvariantCulture);
}
