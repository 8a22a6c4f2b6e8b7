using System.Runtime.InteropServices;

namespace MoeCompiler.IO;

/// <summary>
/// Reads an input file only when it is a regular file of a plausible size, links resolved first. Compiled into
/// each assembly that reads user files (linked from src/Shared), so each keeps its own error type.
/// <para>
/// .NET exposes no file type on Unix (a FIFO or <c>/dev/zero</c> reports <see cref="FileAttributes.Normal"/>),
/// so on Linux the type is asked with statx before the file is opened: opening a FIFO would block until a writer
/// appears, and reading <c>/dev/zero</c> never ends. Elsewhere the size is the fallback: devices, FIFOs and
/// sockets report 0. An empty regular file is refused as well: no input of this project can be empty. Reading
/// stops at the size seen, so a file that grows meanwhile cannot make it read more. Hugging Face's hub cache
/// exposes blobs through symbolic links, so links are followed to their final target first.
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
        if (NonRegularKind(resolved) is { } kind) return $"is a {kind}, not a regular file: only regular files are read";
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

    /// <summary>The final target of <paramref name="path"/> when it is, or leads to, a regular file; otherwise the
    /// reason it is refused, in words that follow "PATH: " in an error message.</summary>
    public static bool TryResolve(string path, out string resolved, out string problem)
    {
        resolved = Path.GetFullPath(path);
        problem = "";
        try
        {
            var info = new FileInfo(resolved);
            if (info.LinkTarget is not null)
            {
                var target = info.ResolveLinkTarget(returnFinalTarget: true);
                if (target is null || !target.Exists && !Directory.Exists(target.FullName))
                {
                    problem = $"a symbolic link to '{info.LinkTarget}', which does not exist";
                    return false;
                }
                resolved = target.FullName;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = "a symbolic link that cannot be followed: " + e.Message;
            return false;
        }
        if (Directory.Exists(resolved))
        {
            problem = "a folder, not a file";
            return false;
        }
        if (!File.Exists(resolved))
        {
            problem = "no such file";
            return false;
        }
        string? kind = NonRegularKind(resolved);
        if (kind is not null)
        {
            problem = resolved == Path.GetFullPath(path) ? $"a {kind}, not a regular file" : $"a link to '{resolved}', a {kind}, not a regular file";
            return false;
        }
        return true;
    }

    /// <summary>Null for a regular file (or where the type cannot be asked); else what the file is.</summary>
    private static unsafe string? NonRegularKind(string path)
    {
        if (!OperatingSystem.IsLinux()) return null;
        // statx's buffer layout is the same on every Linux architecture (unlike struct stat): stx_mode is the
        // 16-bit field at byte 28.
        byte* buffer = stackalloc byte[256];
        int rc;
        try
        {
            rc = Statx(AtFdCwd, path, 0, StatxType, buffer);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return null;
        }
        if (rc != 0) return null;
        int type = *(ushort*)(buffer + 28) & 0xF000;
        return type switch
        {
            0x8000 => null,
            0x1000 => "named pipe (FIFO)",
            0x2000 => "character device",
            0x6000 => "block device",
            0xC000 => "socket",
            0x4000 => "folder",
            _ => "special file",
        };
    }

    private const int AtFdCwd = -100;
    private const uint StatxType = 1;

    [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static extern unsafe int Statx(int dirFd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte* buffer);
}
