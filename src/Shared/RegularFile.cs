using System.Runtime.InteropServices;

namespace MoeCompiler.Shared;

/// <summary>
/// The one gate every loader passes a user-given path through: symbolic links are followed to their final target
/// (Hugging Face's hub cache exposes blobs through links), and only a regular file is accepted. A device such as
/// /dev/zero would be read until memory runs out, and opening a FIFO blocks until something writes to it, so the
/// type is checked before the file is opened. Linked as source into each assembly that reads user files.
/// </summary>
internal static class RegularFile
{
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
