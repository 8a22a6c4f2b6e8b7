using System.Reflection;

namespace MoeCompiler.Cuda;

/// <summary>The CUDA C kernel sources embedded in this assembly, each with the shared prelude prepended.</summary>
public static class KernelSources
{
    private const string Prefix = "MoeCompiler.Cuda.Kernels.";
    private const string PreludeName = "common.cuh";

    /// <summary>Source file names (e.g. <c>norms.cu</c>), sorted.</summary>
    public static IReadOnlyList<string> Names { get; } = typeof(KernelSources).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(Prefix, StringComparison.Ordinal) && n.EndsWith(".cu", StringComparison.Ordinal))
        .Select(n => n[Prefix.Length..])
        .OrderBy(n => n, StringComparer.Ordinal)
        .ToArray();

    private static readonly Lazy<string> Prelude = new(() => ReadResource(PreludeName));

    /// <summary>The translation unit NVRTC compiles: prelude, then the file with line numbers reset for the log.</summary>
    public static string Load(string name)
    {
        if (!Names.Contains(name, StringComparer.Ordinal))
            throw new ArgumentException($"no embedded kernel source named {name}; have {string.Join(", ", Names)}", nameof(name));
        return "#line 1 \"" + PreludeName + "\"\n" + Prelude.Value + "\n#line 1 \"" + name + "\"\n" + ReadResource(name);
    }

    private static string ReadResource(string name)
    {
        using Stream stream = typeof(KernelSources).Assembly.GetManifestResourceStream(Prefix + name)
            ?? throw new InvalidOperationException($"kernel resource {name} is missing from {typeof(KernelSources).Assembly.GetName().Name}");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
