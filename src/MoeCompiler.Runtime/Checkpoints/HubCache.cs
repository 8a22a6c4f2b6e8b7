using System.Text.RegularExpressions;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// Finds a model downloaded by the Hugging Face tools, offline. They keep one folder per repository,
/// <c>models--ORG--NAME</c>, holding the files as <c>blobs/</c>, the commit each branch or tag points at in
/// <c>refs/</c>, and a <c>snapshots/COMMIT/</c> folder of symbolic links per downloaded commit. The cache folder is
/// <c>$HF_HUB_CACHE</c>, else <c>$HF_HOME/hub</c>, else <c>$XDG_CACHE_HOME/huggingface/hub</c>, else
/// <c>~/.cache/huggingface/hub</c> (huggingface_hub's <c>constants.py</c>). Nothing is downloaded.
/// </summary>
public static partial class HubCache
{
    /// <summary>The cache folder the Hugging Face tools use with these environment variables, and which variable
    /// decided it (for error messages).</summary>
    public static (string Folder, string Source) CacheFolder(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        static bool Set(string? v) => !string.IsNullOrWhiteSpace(v);
        if (environment("HF_HUB_CACHE") is { } hubCache && Set(hubCache)) return (ExpandHome(hubCache, environment), "HF_HUB_CACHE");
        if (environment("HUGGINGFACE_HUB_CACHE") is { } legacy && Set(legacy)) return (ExpandHome(legacy, environment), "HUGGINGFACE_HUB_CACHE");
        if (environment("HF_HOME") is { } home && Set(home)) return (Path.Combine(ExpandHome(home, environment), "hub"), "HF_HOME");
        if (environment("XDG_CACHE_HOME") is { } xdg && Set(xdg)) return (Path.Combine(ExpandHome(xdg, environment), "huggingface", "hub"), "XDG_CACHE_HOME");
        return (Path.Combine(UserHome(environment), ".cache", "huggingface", "hub"), "the default");
    }

    /// <summary>True for text shaped like a repository id, <c>ORG/NAME</c> (letters, digits, '-', '_', '.').</summary>
    public static bool IsRepoId(string text) => text is not null && RepoIdPattern().IsMatch(text) && !text.Contains("..", StringComparison.Ordinal);

    /// <summary>
    /// <paramref name="pathOrRepoId"/> itself when it names an existing file or folder; otherwise, when it is shaped
    /// like <c>ORG/NAME</c>, that repository's snapshot folder in the hub cache for <paramref name="revision"/>
    /// (a branch or tag name under <c>refs/</c>, or a commit hash; default <c>main</c>). Throws
    /// <see cref="CheckpointException"/> naming every place it looked when neither is found.
    /// </summary>
    public static string Resolve(string pathOrRepoId, string? revision = null, Func<string, string?>? environment = null)
    {
        ArgumentNullException.ThrowIfNull(pathOrRepoId);
        if (Directory.Exists(pathOrRepoId) || File.Exists(pathOrRepoId) || new FileInfo(pathOrRepoId).LinkTarget is not null)
        {
            if (revision is not null)
                throw new CheckpointException(pathOrRepoId, $"is a local folder or file: a revision ('{revision}') applies only to a repository id ORG/NAME in the hub cache");
            return Path.GetFullPath(pathOrRepoId);
        }
        if (!IsRepoId(pathOrRepoId))
            throw new CheckpointException(pathOrRepoId, "no such file or folder (nor a repository id ORG/NAME to look up in the Hugging Face hub cache)");
        return FindSnapshot(pathOrRepoId, revision ?? "main", environment);
    }

    /// <summary>The snapshot folder of <paramref name="repoId"/> at <paramref name="revision"/>, or null when it is
    /// not in the cache (no exception: for optional look-ups such as a default vision tower).</summary>
    public static string? TryFindSnapshot(string repoId, string revision = "main", Func<string, string?>? environment = null)
    {
        try { return IsRepoId(repoId) ? FindSnapshot(repoId, revision, environment) : null; }
        catch (CheckpointException) { return null; }
    }

    private static string FindSnapshot(string repoId, string revision, Func<string, string?>? environment)
    {
        var (cache, source) = CacheFolder(environment);
        string repoFolder = Path.Combine(cache, "models--" + repoId.Replace("/", "--", StringComparison.Ordinal));
        string where = $"looked in {repoFolder} (hub cache from {source}; set HF_HUB_CACHE or HF_HOME to look elsewhere)";
        if (!Directory.Exists(repoFolder))
            throw new CheckpointException(repoId,
                $"not a folder here, and not in the Hugging Face hub cache: {where}. Download it (e.g. 'huggingface-cli download {repoId}') or give its folder");
        string snapshots = Path.Combine(repoFolder, "snapshots");
        if (!SafeName().IsMatch(revision) || revision is "." or "..")
            throw new CheckpointException(repoId, $"'{revision}' is not a branch, tag or commit name");
        string refFile = Path.Combine(repoFolder, "refs", revision);
        string commit = revision;
        if (File.Exists(refFile))
        {
            commit = ReadRef(refFile);
            if (!CommitPattern().IsMatch(commit))
                throw new CheckpointException(refFile, $"should hold a commit hash, but holds '{Shorten(commit)}'");
        }
        else if (!CommitPattern().IsMatch(revision))
        {
            throw new CheckpointException(repoId,
                $"revision '{revision}' is not in the hub cache: {where}, found no {Path.Combine("refs", revision)}" +
                $"{Available(repoFolder, snapshots)}");
        }
        string snapshot = Path.Combine(snapshots, commit);
        if (!Directory.Exists(snapshot))
            throw new CheckpointException(repoId,
                $"revision '{revision}' (commit {commit}) has no snapshot folder: {where}, found no {Path.Combine("snapshots", commit)}{Available(repoFolder, snapshots)}");
        return snapshot;
    }

    private static string ReadRef(string refFile)
    {
        if (!MoeCompiler.IO.RegularFile.TryResolve(refFile, out string resolved, out string problem))
            throw new CheckpointException(refFile, problem);
        if (new FileInfo(resolved).Length > 1024) throw new CheckpointException(refFile, "is too long for a commit hash");
        try { return File.ReadAllText(resolved).Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(refFile, "cannot read it: " + e.Message, e);
        }
    }

    private static string Available(string repoFolder, string snapshots)
    {
        static string Names(string folder, bool directories)
        {
            if (!Directory.Exists(folder)) return "none";
            var names = (directories ? Directory.GetDirectories(folder) : Directory.GetFiles(folder))
                .Select(Path.GetFileName).Order(StringComparer.Ordinal).Take(10).ToArray();
            return names.Length == 0 ? "none" : string.Join(", ", names);
        }
        return $"; refs there: {Names(Path.Combine(repoFolder, "refs"), false)}; snapshots: {Names(snapshots, true)}";
    }

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..60] + "…";

    private static string ExpandHome(string path, Func<string, string?> environment) =>
        path == "~" || path.StartsWith("~/", StringComparison.Ordinal) ? UserHome(environment) + path[1..] : path;

    private static string UserHome(Func<string, string?> environment) =>
        environment("HOME") is { Length: > 0 } home ? home : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$", RegexOptions.CultureInvariant)]
    private static partial Regex RepoIdPattern();

    [GeneratedRegex(@"^[A-Za-z0-9._-]+$", RegexOptions.CultureInvariant)]
    private static partial Regex SafeName();

    [GeneratedRegex(@"^[0-9a-f]{40}$", RegexOptions.CultureInvariant)]
    private static partial Regex CommitPattern();
}
