using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Parity;

/// <summary>The generated tiny variants (MoeCompiler.Models, from modelspecs/tiny-*.json) by golden folder.</summary>
internal static class VariantLoader
{
    private delegate IVisionLanguageModel Loader(string folder, IBackend backend, BindOptions options);

    private static readonly Dictionary<string, Loader> s_loaders = new()
    {
        ["tiny-stablelm-moe"] = (f, b, o) => TinyStableLmMoe.Load(f, b, o),
        ["tiny-qwen-moe"] = (f, b, o) => TinyQwenMoe.Load(f, b, o),
        ["tiny-phi-moe"] = (f, b, o) => TinyPhiMoe.Load(f, b, o),
        ["tiny-openchat-moe"] = (f, b, o) => TinyOpenChatMoe.Load(f, b, o),
        ["tiny-cumo-mixtral"] = (f, b, o) => TinyCuMoMixtral.Load(f, b, o),
    };

    public static IEnumerable<string> Folders => s_loaders.Keys;

    /// <summary>Loads the committed tiny checkpoint, converting the weights to <paramref name="targetDType"/>.</summary>
    public static IVisionLanguageModel Load(string folder, string checkpoint, IBackend backend, DType targetDType) =>
        s_loaders[folder](checkpoint, backend, new BindOptions { TargetDType = targetDType });
}
