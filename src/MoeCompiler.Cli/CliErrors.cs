using MoeCompiler.Imaging;
using MoeCompiler.Runtime.Checkpoints;

namespace MoeCompiler.Cli;

/// <summary>A problem with what the user asked for: printed as one message, no stack trace.</summary>
public sealed class UserInputException(string message, int exitCode = ExitCodes.BadInput) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

public static class ExitCodes
{
    public const int Success = 0;
    /// <summary>An unexpected failure inside the tool (a bug: please report it with the message).</summary>
    public const int InternalError = 1;
    /// <summary>Bad input: a missing or malformed file, an unknown variant, an invalid option value.</summary>
    public const int BadInput = 2;
    /// <summary>The request is valid but cannot run here (no CUDA device, not enough memory).</summary>
    public const int Unavailable = 3;
    /// <summary>The run was cancelled (Ctrl+C).</summary>
    public const int Cancelled = 130;
}

internal static class CliErrors
{
    /// <summary>Maps the exceptions our libraries throw for bad input to one clear line and an exit code.</summary>
    public static bool TryDescribe(Exception ex, out string message, out int exitCode)
    {
        switch (ex)
        {
            case UserInputException u:
                message = u.Message; exitCode = u.ExitCode; return true;
            case CheckpointBindingException b:
                message = b.Message; exitCode = ExitCodes.BadInput; return true;
            case CheckpointException c:
                message = c.Message; exitCode = ExitCodes.BadInput; return true;
            case MoeCompiler.Runtime.Generation.ModelInputException m:
                message = m.Message; exitCode = ExitCodes.BadInput; return true;
            case MoeCompiler.Tokenizers.TokenizerLoadException t:
                message = t.Message + " (the tokenizer files ship in the tool's 'tokenizers' folder; reinstall or rebuild the tool)";
                exitCode = ExitCodes.Unavailable; return true;
            case ImageDecodingException i:
                message = i.Message; exitCode = ExitCodes.BadInput; return true;
            case FileNotFoundException f:
                message = $"file not found: {f.FileName ?? f.Message}"; exitCode = ExitCodes.BadInput; return true;
            case DirectoryNotFoundException d:
                message = d.Message; exitCode = ExitCodes.BadInput; return true;
            case OperationCanceledException:
                message = "cancelled"; exitCode = ExitCodes.Cancelled; return true;
            case UnauthorizedAccessException a:
                message = a.Message; exitCode = ExitCodes.BadInput; return true;
            default:
                message = $"{ex.GetType().Name}: {ex.Message}"; exitCode = ExitCodes.InternalError; return true;
        }
    }
}
