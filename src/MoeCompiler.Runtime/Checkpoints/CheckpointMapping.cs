using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>Maps checkpoint files, turning the operating system's complaints into <see cref="CheckpointException"/>s.</summary>
internal static class CheckpointMapping
{
    /// <summary>Maps the whole file at <paramref name="path"/>, following symbolic links (a hub cache's snapshot
    /// folder links to blobs); anything but a regular file is refused. The caller owns the first reference.</summary>
    public static MappedFileStorage Open(string path)
    {
        if (!MoeCompiler.IO.RegularFile.TryResolve(path, out string resolved, out string problem))
            throw new CheckpointException(path, problem);
        long length;
        try
        {
            length = new FileInfo(resolved).Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, "cannot open the file: " + e.Message, e);
        }
        if (length == 0) throw new CheckpointException(path, "the file is empty");
        try
        {
            return MappedFileStorage.Open(resolved);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, "cannot map the file into memory: " + e.Message, e);
        }
    }
}
