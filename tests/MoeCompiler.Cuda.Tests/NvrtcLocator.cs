using MoeCompiler.Cuda.Native;

namespace MoeCompiler.Cuda.Tests;

/// <summary>
/// Finds the NVRTC the PTX compile check uses: Debian's libnvrtc.so.11.2 (package libnvrtc11.2, bookworm non-free,
/// installed by scripts/ci/install-nvrtc.sh) first, then any other NVRTC the locator can find.
/// </summary>
internal static class NvrtcLocator
{
    public const string PreferredName = "libnvrtc.so.11.2";
    private static readonly Lazy<(Nvrtc? Nvrtc, string Report)> Found = new(Find);

    public static Nvrtc? Nvrtc => Found.Value.Nvrtc;
    public static string Report => Found.Value.Report;
    public static bool IsCi => Environment.GetEnvironmentVariable("CI") is { } ci
        && (ci.Equals("true", StringComparison.OrdinalIgnoreCase) || ci == "1");

    private static (Nvrtc?, string) Find()
    {
        var names = new List<string> { PreferredName };
        names.AddRange(CudaLibraryNames.Nvrtc.Where(n => n != PreferredName));
        var candidates = CudaLibraryLocator.Candidates(names, CudaLibraryLocator.ExplicitDirectories(), CudaLibraryLocator.DiscoveredDirectories());
        foreach (string candidate in candidates)
        {
            try
            {
                var nvrtc = Native.Nvrtc.FromPath(candidate);
                return (nvrtc, $"NVRTC {nvrtc.Version} from {nvrtc.LibraryPath}");
            }
            catch (CudaUnavailableException) { }
        }
        return (null, "no NVRTC found (install Debian's libnvrtc11.2: bash scripts/ci/install-nvrtc.sh); tried " + string.Join(", ", candidates));
    }
}

/// <summary>
/// A fact that needs NVRTC but no GPU: skipped (visibly) when NVRTC is missing, except under CI=true where the
/// test runs and fails, so a CI image without libnvrtc11.2 cannot silently pass the kernel compile check.
/// </summary>
public sealed class NvrtcFactAttribute : FactAttribute
{
    public NvrtcFactAttribute()
    {
        if (NvrtcLocator.Nvrtc is null && !NvrtcLocator.IsCi) Skip = NvrtcLocator.Report;
    }
}
