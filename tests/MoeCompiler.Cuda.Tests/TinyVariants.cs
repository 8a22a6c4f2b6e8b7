using System.Text.Json;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda.Tests;

/// <summary>
/// The generated tiny variants (MoeCompiler.Models, from modelspecs/tiny-*.json) with the committed checkpoints,
/// pixels and prompts of the CPU parity tests (tests/MoeCompiler.Inference.Tests/TestData, linked as TinyVariants/).
/// </summary>
internal static class TinyVariants
{
    private delegate IVisionLanguageModel Loader(string checkpoint, IBackend backend, BindOptions options);

    private static readonly Dictionary<string, Loader> s_loaders = new()
    {
        ["tiny-stablelm-moe"] = (f, b, o) => TinyStableLmMoe.Load(f, b, o),
        ["tiny-qwen-moe"] = (f, b, o) => TinyQwenMoe.Load(f, b, o),
        ["tiny-phi-moe"] = (f, b, o) => TinyPhiMoe.Load(f, b, o),
        ["tiny-openchat-moe"] = (f, b, o) => TinyOpenChatMoe.Load(f, b, o),
        ["tiny-cumo-mixtral"] = (f, b, o) => TinyCuMoMixtral.Load(f, b, o),
    };

    public static IEnumerable<string> Names => s_loaders.Keys;

    public static string Folder(string name) => Path.Combine(AppContext.BaseDirectory, "TinyVariants", name);

    /// <summary>One greedy generation: every step's logits, the generated ids and every MoE routing record.</summary>
    public sealed record Run(float[][] StepLogits, int[] TokenIds, IReadOnlyList<RoutingRecord> Routing);

    /// <summary>Loads the variant with bf16 weights on <paramref name="backend"/> and generates <paramref name="tokens"/> tokens greedily.</summary>
    public static Run Generate(string name, IBackend backend, int tokens)
    {
        string folder = Folder(name);
        using var json = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "golden.json")));
        int[] ids = json.RootElement.GetProperty("inputIds").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] pixelsShape = json.RootElement.GetProperty("pixelsShape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        byte[] pixelBytes = File.ReadAllBytes(Path.Combine(folder, "pixels.bin"));
        var pixelValues = new float[pixelBytes.Length / 4];
        Buffer.BlockCopy(pixelBytes, 0, pixelValues, 0, pixelBytes.Length); // little-endian f32, as tests/reference writes it

        var model = s_loaders[name](Path.Combine(folder, "model.safetensors"), backend, new BindOptions { TargetDType = DType.BF16 });
        try
        {
            var pixels = backend.Allocate(DType.F32, pixelsShape);
            backend.Upload(pixelValues, pixels);
            var recorder = new RoutingRecorder();
            var steps = new List<float[]>();
            var result = new TextGenerator(model, backend).Generate(new GenerationRequest
            {
                PromptIds = ids,
                Images = [pixels],
                Options = new GenerationOptions { MaxNewTokens = tokens, StopOnEos = false },
                ObserveLogits = (_, row) => steps.Add(row.ToArray()),
                ConfigureContext = c => c.Routing = recorder,
            });
            return new Run(steps.ToArray(), result.TokenIds, recorder.Records);
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }
}
