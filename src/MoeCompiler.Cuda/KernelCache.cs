using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace MoeCompiler.Cuda;

/// <summary>
/// What a compiled kernel image depends on: the full source text, the target architecture, the NVRTC options,
/// the NVRTC version and the image kind. Any change gives a different <see cref="Hash"/>.
/// </summary>
public sealed record KernelCacheKey(string SourceName, string Source, string Architecture, IReadOnlyList<string> Options,
    string CompilerVersion, bool Cubin)
{
    public string Hash
    {
        get
        {
            var text = new StringBuilder();
            // Length-prefixed fields so that no two different keys serialise to the same text.
            void Field(string s) => text.Append(s.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append(':').Append(s).Append('\n');
            Field("moe-cuda-kernel-v1");
            Field(SourceName);
            Field(Source);
            Field(Architecture);
            Field(Options.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
            foreach (string option in Options) Field(option);
            Field(CompilerVersion);
            Field(Cubin ? "cubin" : "ptx");
            return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
        }
    }

    /// <summary>The file name in the disk cache, readable enough to tell files apart.</summary>
    public string FileName => $"{Path.GetFileNameWithoutExtension(SourceName)}-{Architecture}-{Hash[..16]}.{(Cubin ? "cubin" : "ptx")}";
}

/// <summary>
/// Compiled kernel images, cached per process and on disk (by <see cref="KernelCacheKey.Hash"/>) so NVRTC runs once
/// per source, architecture and compiler. A missing or unwritable cache folder only costs a recompile.
/// </summary>
public sealed class KernelCache
{
    public const string DirectoryVariable = "MOE_CUDA_CACHE_DIR";

    private readonly ConcurrentDictionary<string, byte[]> _memory = new(StringComparer.Ordinal);

    public KernelCache(string? directory)
    {
        Directory = directory;
    }

    /// <summary>The default process-wide cache over <see cref="DefaultDirectory"/>.</summary>
    public static KernelCache Shared { get; } = new(DefaultDirectory());

    /// <summary>Null disables the disk cache.</summary>
    public string? Directory { get; }

    private int _compilations;

    public int Compilations => _compilations;

    /// <summary><c>MOE_CUDA_CACHE_DIR</c>, else <c>$XDG_CACHE_HOME/moecompiler/cuda</c>, else <c>~/.cache/moecompiler/cuda</c>.</summary>
    public static string? DefaultDirectory()
    {
        string? explicitDir = Environment.GetEnvironmentVariable(DirectoryVariable);
        if (!string.IsNullOrWhiteSpace(explicitDir)) return explicitDir;
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrWhiteSpace(xdg)) return Path.Combine(xdg, "moecompiler", "cuda");
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return string.IsNullOrEmpty(home) ? null : Path.Combine(home, ".cache", "moecompiler", "cuda");
    }

    public byte[] GetOrCompile(KernelCacheKey key, Func<byte[]> compile)
    {
        string hash = key.Hash;
        if (_memory.TryGetValue(hash, out byte[]? cached)) return cached;
        byte[]? image = TryReadDisk(key);
        if (image is null)
        {
            image = compile();
            Interlocked.Increment(ref _compilations);
            TryWriteDisk(key, image);
        }
        return _memory.GetOrAdd(hash, image);
    }

    private byte[]? TryReadDisk(KernelCacheKey key)
    {
        if (Directory is null) return null;
        string path = Path.Combine(Directory, key.FileName);
        try
        {
            return File.Exists(path) ? File.ReadAllBytes(path) : null;
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    private void TryWriteDisk(KernelCacheKey key, byte[] image)
    {
        if (Directory is null) return;
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            string path = Path.Combine(Directory, key.FileName);
            // Write then rename so a concurrent reader never sees half a file.
            string temporary = path + "." + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) + ".tmp";
            File.WriteAllBytes(temporary, image);
            File.Move(temporary, path, overwrite: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
