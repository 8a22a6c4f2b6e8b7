using System.Runtime.InteropServices;

namespace MoeCompiler.Cuda.Native;

/// <summary>The shared libraries the backend loads, newest first.</summary>
public static class CudaLibraryNames
{
    public static readonly IReadOnlyList<string> Driver = ["libcuda.so.1", "libcuda.so"];
    public static readonly IReadOnlyList<string> Cublas = ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"];
    public static readonly IReadOnlyList<string> Nvrtc =
        ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so.11.1", "libnvrtc.so.11.0", "libnvrtc.so"];
}

/// <summary>
/// Finds CUDA shared libraries without a package: over <c>MOE_CUDA_LIB_DIRS</c> (colon separated), the dynamic
/// loader's own search (LD_LIBRARY_PATH, ldconfig), <c>CUDA_HOME</c>/<c>CUDA_PATH</c>, <c>/usr/local/cuda</c>,
/// and the <c>nvidia/*/lib</c> folders of Python site-packages (where pip's nvidia-* wheels put cuBLAS and NVRTC).
/// </summary>
public static class CudaLibraryLocator
{
    public const string LibraryDirsVariable = "MOE_CUDA_LIB_DIRS";

    /// <summary>A library that was opened, with the file or name that worked.</summary>
    public sealed record LoadedLibrary(nint Handle, string Path);

    /// <summary>
    /// Candidate load targets in order. For each name (newest first): the explicit directories, then the bare name
    /// (the system loader), then the other directories; in a directory, also versioned files such as
    /// <c>libnvrtc.so.12.4.127</c> that start with the name. Pure apart from listing the given directories.
    /// </summary>
    public static IReadOnlyList<string> Candidates(IReadOnlyList<string> names, IReadOnlyList<string> explicitDirectories,
        IReadOnlyList<string> otherDirectories)
    {
        var result = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        void Add(string candidate)
        {
            if (seen.Add(candidate)) result.Add(candidate);
        }
        void AddFromDirectory(string directory, string name)
        {
            string exact = System.IO.Path.Combine(directory, name);
            if (File.Exists(exact)) Add(exact);
            if (!Directory.Exists(directory)) return;
            string[] versioned;
            try
            {
                versioned = Directory.GetFiles(directory, name + ".*");
            }
            catch (IOException) { return; }
            catch (UnauthorizedAccessException) { return; }
            // Longer version suffixes are more specific builds of the same soname; order is stable either way.
            Array.Sort(versioned, StringComparer.Ordinal);
            foreach (string file in versioned) Add(file);
        }

        foreach (string name in names)
        {
            foreach (string directory in explicitDirectories) AddFromDirectory(directory, name);
            Add(name);
            foreach (string directory in otherDirectories) AddFromDirectory(directory, name);
        }
        return result;
    }

    /// <summary>Directories named by <c>MOE_CUDA_LIB_DIRS</c> (or the given value), in order, empty entries dropped.</summary>
    public static IReadOnlyList<string> ExplicitDirectories(string? variableValue = null)
    {
        variableValue ??= Environment.GetEnvironmentVariable(LibraryDirsVariable);
        if (string.IsNullOrWhiteSpace(variableValue)) return Array.Empty<string>();
        return variableValue.Split(':', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    /// <summary>Toolkit folders and the <c>nvidia/*/lib</c> folders of every Python site-packages found.</summary>
    public static IReadOnlyList<string> DiscoveredDirectories()
    {
        var dirs = new List<string>();
        foreach (string variable in new[] { "CUDA_HOME", "CUDA_PATH" })
        {
            string? root = Environment.GetEnvironmentVariable(variable);
            if (!string.IsNullOrEmpty(root))
            {
                dirs.Add(System.IO.Path.Combine(root, "lib64"));
                dirs.Add(System.IO.Path.Combine(root, "lib"));
            }
        }
        dirs.Add("/usr/local/cuda/lib64");
        foreach (string sitePackages in SitePackagesDirectories())
            dirs.AddRange(NvidiaWheelLibraryDirectories(sitePackages));
        return dirs.Distinct(StringComparer.Ordinal).ToArray();
    }

    /// <summary><c>site/nvidia/*/lib</c> for one site-packages folder (cublas, cuda_nvrtc, cuda_runtime, ...).</summary>
    public static IEnumerable<string> NvidiaWheelLibraryDirectories(string sitePackages)
    {
        string nvidia = System.IO.Path.Combine(sitePackages, "nvidia");
        if (!Directory.Exists(nvidia)) yield break;
        string[] packages;
        try { packages = Directory.GetDirectories(nvidia); }
        catch (IOException) { yield break; }
        catch (UnauthorizedAccessException) { yield break; }
        Array.Sort(packages, StringComparer.Ordinal);
        foreach (string package in packages)
        {
            string lib = System.IO.Path.Combine(package, "lib");
            if (Directory.Exists(lib)) yield return lib;
        }
    }

    private static IEnumerable<string> SitePackagesDirectories()
    {
        var roots = new List<string>();
        foreach (string variable in new[] { "VIRTUAL_ENV", "CONDA_PREFIX" })
        {
            string? prefix = Environment.GetEnvironmentVariable(variable);
            if (!string.IsNullOrEmpty(prefix)) roots.Add(System.IO.Path.Combine(prefix, "lib"));
        }
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (!string.IsNullOrEmpty(home)) roots.Add(System.IO.Path.Combine(home, ".local", "lib"));
        roots.Add("/usr/local/lib");
        roots.Add("/usr/lib");
        roots.Add("/opt/conda/lib");
        foreach (string root in roots)
        {
            if (!Directory.Exists(root)) continue;
            string[] pythons;
            try { pythons = Directory.GetDirectories(root, "python3*"); }
            catch (IOException) { continue; }
            catch (UnauthorizedAccessException) { continue; }
            Array.Sort(pythons, StringComparer.Ordinal);
            foreach (string python in pythons)
            {
                foreach (string leaf in new[] { "site-packages", "dist-packages" })
                {
                    string dir = System.IO.Path.Combine(python, leaf);
                    if (Directory.Exists(dir)) yield return dir;
                }
            }
        }
    }

    /// <summary>
    /// Opens the first candidate that loads; <see cref="CudaUnavailableException"/> lists them all otherwise.
    /// With <paramref name="maxMajorVersion"/> (the driver's CUDA major version), libraries whose soname says a
    /// newer major version (libcublas.so.13 on a CUDA 12 driver) are passed over: they would load but then fail.
    /// </summary>
    public static LoadedLibrary Load(string description, IReadOnlyList<string> names, int? maxMajorVersion = null)
    {
        var candidates = Candidates(names, ExplicitDirectories(), DiscoveredDirectories());
        var tried = new List<string>();
        foreach (string candidate in candidates)
        {
            if (maxMajorVersion is { } max && SonameMajorVersion(candidate) is { } major && major > max)
            {
                tried.Add($"{candidate} (skipped: CUDA {major} is newer than the driver's CUDA {max})");
                continue;
            }
            tried.Add(candidate);
            if (NativeLibrary.TryLoad(candidate, out nint handle)) return new LoadedLibrary(handle, candidate);
        }
        throw new CudaUnavailableException(
            $"{description} could not be loaded. Install it, or set {LibraryDirsVariable} to the folder that holds it.",
            tried);
    }

    /// <summary>12 for <c>libcublas.so.12</c> or <c>/x/libnvrtc.so.12.4.127</c>; null for an unversioned name.</summary>
    public static int? SonameMajorVersion(string path)
    {
        var match = System.Text.RegularExpressions.Regex.Match(System.IO.Path.GetFileName(path), @"\.so\.(\d+)");
        return match.Success ? int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : null;
    }

    internal static unsafe nint Export(LoadedLibrary library, string symbol)
    {
        if (NativeLibrary.TryGetExport(library.Handle, symbol, out nint address)) return address;
        throw new CudaUnavailableException($"{library.Path} has no symbol {symbol} (too old a version?)");
    }

    internal static nint OptionalExport(LoadedLibrary library, string symbol) =>
        NativeLibrary.TryGetExport(library.Handle, symbol, out nint address) ? address : 0;
}
