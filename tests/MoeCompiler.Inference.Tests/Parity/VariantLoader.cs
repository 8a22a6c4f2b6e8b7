using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Parity;

/// <summary>The generated tiny variants (MoeCompiler.Models, from modelspecs/tiny-*.json) by golden folder.</summary>
internal static class VariantLoader
{
    private delegate ILanguageModel Loader(string folder, IBackend backend, BindOptions options);

    private static readonly Dictionary<string, Loader> s_loaders = new()
    {
        ["tiny-stablelm-moe"] = (f, b, o) => TinyStableLmMoe.Load(f, b, o),
        ["tiny-qwen-moe"] = (f, b, o) => TinyQwenMoe.Load(f, b, o),
        ["tiny-phi-moe"] = (f, b, o) => TinyPhiMoe.Load(f, b, o),
        ["tiny-openchat-moe"] = (f, b, o) => TinyOpenChatMoe.Load(f, b, o),
        ["tiny-cumo-mixtral"] = (f, b, o) => TinyCuMoMixtral.Load(f, b, o),
        // Text-only variants (no tower, no projector): the LLM alone against the reference.
        ["tiny-mixtral-text"] = (f, b, o) => TinyMixtralText.Load(f, b, o),
        ["tiny-qwen-text"] = (f, b, o) => TinyQwenText.Load(f, b, o),
    };

    public static IEnumerable<string> Folders => s_loaders.Keys;

    /// <summary>The folders whose variant has a vision tower (the image tests run on these).</summary>
    public static IEnumerable<string> VisionFolders => s_loaders.Keys.Where(f => !f.EndsWith("-text", StringComparison.Ordinal));

    /// <summary>Loads the committed tiny checkpoint, converting the weights to <paramref name="targetDType"/>.</summary>
    public static ILanguageModel Load(string folder, string checkpoint, IBackend backend, DType targetDType) =>
        s_loaders[folder](checkpoint, backend, new BindOptions { TargetDType = targetDType });
}
