using System.Reflection;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Parity;

/// <summary>
/// Finds the generated variant class for a tiny spec in MoeCompiler.Models and calls its
/// <c>static Load(string folder, IBackend backend, BindOptions? options)</c> (API.md). Looked up by name so the
/// parity suite builds whether or not the generator, modules and checkpoint binder are merged yet; until they
/// are, <see cref="ParityTheoryAttribute"/> skips the suite with that reason.
/// </summary>
internal static class VariantLoader
{
    public static readonly (string Folder, string ClassName)[] TinySpecs =
    [
        ("tiny-stablelm-moe", "TinyStableLmMoe"),
        ("tiny-qwen-moe", "TinyQwenMoe"),
        ("tiny-phi-moe", "TinyPhiMoe"),
        ("tiny-openchat-moe", "TinyOpenChatMoe"),
        ("tiny-cumo-mixtral", "TinyCuMoMixtral"),
    ];

    private static readonly Lazy<Assembly?> s_models = new(() =>
    {
        try { return Assembly.Load("MoeCompiler.Models"); } catch (IOException) { return null; }
    });

    public static Type? FindVariant(string className) => s_models.Value?.GetTypes().FirstOrDefault(t =>
        t.Name == className && typeof(IVisionLanguageModel).IsAssignableFrom(t) && FindLoad(t) is not null);

    /// <summary>Why the parity suite cannot run yet, or null when every tiny variant and the binder exist.</summary>
    public static string? MissingPieces()
    {
        var missing = TinySpecs.Where(s => FindVariant(s.ClassName) is null).Select(s => s.ClassName).ToList();
        if (BindOptionsType is null) missing.Add("MoeCompiler.Runtime.Checkpoints.BindOptions");
        return missing.Count == 0 ? null : "not built yet: " + string.Join(", ", missing) + " (generator / modules / checkpoint binder)";
    }

    private static Type? BindOptionsType => typeof(IBackend).Assembly.GetType("MoeCompiler.Runtime.Checkpoints.BindOptions");

    private static MethodInfo? FindLoad(Type t) => t.GetMethods(BindingFlags.Public | BindingFlags.Static).FirstOrDefault(m =>
        m.Name == "Load" && m.GetParameters() is var p && p.Length == 3 && p[0].ParameterType == typeof(string)
        && p[1].ParameterType == typeof(IBackend) && typeof(IVisionLanguageModel).IsAssignableFrom(m.ReturnType));

    /// <summary>Loads the committed tiny checkpoint, converting weights to <paramref name="targetDType"/> (null: as stored).</summary>
    public static IVisionLanguageModel Load(string className, string checkpoint, IBackend backend, DType? targetDType)
    {
        var type = FindVariant(className) ?? throw new InvalidOperationException($"generated variant {className} not found");
        object options = Activator.CreateInstance(BindOptionsType!)!;
        BindOptionsType!.GetProperty("TargetDType")!.SetValue(options, targetDType);
        try
        {
            return (IVisionLanguageModel)FindLoad(type)!.Invoke(null, [checkpoint, backend, options])!;
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
    }
}

/// <summary>A theory that is reported as skipped (with the reason) while the generated variants do not exist.</summary>
public sealed class ParityTheoryAttribute : TheoryAttribute
{
    public ParityTheoryAttribute()
    {
        if (VariantLoader.MissingPieces() is { } reason) Skip = reason;
    }
}
