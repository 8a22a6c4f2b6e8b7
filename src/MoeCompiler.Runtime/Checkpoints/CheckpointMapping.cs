using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>Maps checkpoint files, turning the operating system's complaints into <see cref="CheckpointException"/>s.</summary>
internal static class CheckpointMapping
{
    /// <summary>Maps the whole file at <paramref name="path"/>; the caller owns the first reference.</summary>
    public static MappedFileStorage Open(string path)
    {
        long length;
        try
        {
            length = new FileInfo(path).Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, "cannot open the file: " + e.Message, e);
        }
        if (length == 0) throw new CheckpointException(path, "the file is empty");
        try
        {
            return MappedFileStorage.Open(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, "cannot map the file into memory: " + e.Message, e);
        }
    }
}
