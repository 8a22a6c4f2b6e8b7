using System.Globalization;
using System.Text;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>A checkpoint file or folder that cannot be read: the message names the file and the problem.</summary>
public class CheckpointException : Exception
{
    public CheckpointException(string? filePath, string problem, Exception? inner = null)
        : base(filePath is null ? problem : $"{filePath}: {problem}", inner)
    {
        FilePath = filePath;
        Problem = problem;
    }

    /// <summary>The file (or folder) at fault, when there is one.</summary>
    public string? FilePath { get; }

    /// <summary>The problem without the file name.</summary>
    public string Problem { get; }
}

public enum BindingProblemKind
{
    Missing,
    Unexpected,
    WrongShape,
    WrongDType,
}

/// <summary>One mismatch between a manifest and a checkpoint.</summary>
public sealed record BindingProblem(BindingProblemKind Kind, string Key, string Detail)
{
    public override string ToString() => $"{Kind switch
    {
        BindingProblemKind.Missing => "missing",
        BindingProblemKind.Unexpected => "unexpected",
        BindingProblemKind.WrongShape => "wrong shape",
        _ => "wrong dtype",
    }}: {Key}{(Detail.Length == 0 ? "" : " (" + Detail + ")")}";
}

/// <summary>Every problem found while binding a manifest to a checkpoint, reported together.</summary>
public sealed class CheckpointBindingException : CheckpointException
{
    private const int MaxListedProblems = 50;

    public CheckpointBindingException(string? folderPath, string variant, IReadOnlyList<BindingProblem> problems)
        : base(folderPath, Describe(variant, problems))
    {
        Variant = variant;
        Problems = problems;
    }

    public string Variant { get; }
    public IReadOnlyList<BindingProblem> Problems { get; }

    private static string Describe(string variant, IReadOnlyList<BindingProblem> problems)
    {
        var text = new StringBuilder();
        int Count(BindingProblemKind k) => problems.Count(p => p.Kind == k);
        text.Append(CultureInfo.InvariantCulture,
            $"checkpoint does not match variant {variant}: {Count(BindingProblemKind.Missing)} missing, " +
            $"{Count(BindingProblemKind.Unexpected)} unexpected, {Count(BindingProblemKind.WrongShape)} wrong shape, " +
            $"{Count(BindingProblemKind.WrongDType)} wrong dtype");
        foreach (var p in problems.Take(MaxListedProblems)) text.Append("\n  ").Append(p);
        if (problems.Count > MaxListedProblems)
            text.Append(CultureInfo.InvariantCulture, $"\n  ... and {problems.Count - MaxListedProblems} more");
        return text.ToString();
    }
}
