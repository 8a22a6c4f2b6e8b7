namespace MoeCompiler.IO;

/// <summary>
/// Reads an input file only when it is a regular file of a plausible size, links resolved first. Compiled into
/// each assembly that reads user files (linked from src/Shared), so each keeps its own error type.
/// <para>
/// .NET exposes no file type on Unix (a FIFO or <c>/dev/zero</c> reports <see cref="FileAttributes.Normal"/>),
/// but devices, FIFOs and sockets report a size of 0 where a regular file reports its length. So the rule is
/// checked from the size before the file is opened: opening a FIFO would block until a writer appears, and
/// reading <c>/dev/zero</c> never ends. An empty regular file is refused as well: no input of this project
/// can be empty. Reading stops at the size seen, so a file that grows meanwhile cannot make it read more.
/// </para>
/// </summary>
internal static class RegularFile
{
    /// <summary>The problem with <paramref name="path"/> as an input file, or null when it may be read.</summary>
    public static string? Problem(string path, long maxBytes, out string resolved, out long length)
    {
        resolved = path;
        length = 0;
        FileSystemInfo info = new FileInfo(path);
        try
        {
            if (info.LinkTarget is not null)
            {
                info = info.ResolveLinkTarget(returnFinalTarget: true) ?? info;
                if (!info.Exists && !Directory.Exists(info.FullName)) return $"is a link to '{info.FullName}', which does not exist";
            }
        }
        catch (IOException e)
        {
            return "is a link that cannot be resolved: " + e.Message;
        }
        resolved = info.FullName;
        if (Directory.Exists(resolved)) return "is a folder, not a file";
        var file = new FileInfo(resolved);
        if (!file.Exists) return "does not exist";
        length = file.Length;
        if (length == 0) return "is empty or not a regular file (a device, FIFO or socket): only regular files are read";
        if (length > maxBytes) return $"is {length} bytes, larger than the {maxBytes} bytes such a file can plausibly be";
        return null;
    }

    /// <summary>Reads the whole of a regular file of at most <paramref name="maxBytes"/> bytes; any problem, as
    /// a sentence without the file name, goes to <paramref name="fail"/>, whose exception is thrown.</summary>
    public static byte[] ReadAllBytes(string path, long maxBytes, Func<string, Exception?, Exception> fail)
    {
        if (Problem(path, maxBytes, out string resolved, out long length) is { } problem) throw fail(problem, null);
        try
        {
            using var handle = File.OpenHandle(resolved, FileMode.Open, FileAccess.Read, FileShare.Read);
            var bytes = new byte[length];
            int done = 0;
            while (done < bytes.Length)
            {
                int n = RandomAccess.Read(handle, bytes.AsSpan(done), done);
                if (n == 0) throw fail($"became shorter while it was read ({done} of {length} bytes)", null);
                done += n;
            }
            return bytes;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw fail("cannot be read: " + e.Message, e);
        }
    }

    /// <summary><see cref="ReadAllBytes"/> as UTF-8 text (a byte-order mark is skipped).</summary>
    public static string ReadAllText(string path, long maxBytes, Func<string, Exception?, Exception> fail) =>
        System.Text.Encoding.UTF8.GetString(WithoutByteOrderMark(ReadAllBytes(path, maxBytes, fail)).Span);

    /// <summary>The bytes after a UTF-8 byte-order mark, if there is one (the JSON readers refuse it).</summary>
    public static ReadOnlyMemory<byte> WithoutByteOrderMark(byte[] bytes) =>
        bytes.AsSpan().StartsWith("\uFEFF"u8) ? bytes.AsMemory(3) : bytes;
}
