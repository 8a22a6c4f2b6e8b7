namespace MoeCompiler.Cuda.Native;

/// <summary>
/// A CUDA library or device the backend needs is not there. <see cref="Tried"/> lists every library path or name
/// that was attempted, so the message tells the user where to install or point <c>MOE_CUDA_LIB_DIRS</c>.
/// </summary>
public sealed class CudaUnavailableException : Exception
{
    public CudaUnavailableException(string message, IReadOnlyList<string>? tried = null, Exception? inner = null)
        : base(Compose(message, tried), inner)
    {
        Tried = tried ?? Array.Empty<string>();
    }

    public IReadOnlyList<string> Tried { get; }

    private static string Compose(string message, IReadOnlyList<string>? tried)
    {
        if (tried is null || tried.Count == 0) return message;
        const int shown = 40;
        var lines = tried.Take(shown).Select(t => "  tried " + t);
        string more = tried.Count > shown ? $"\n  ... and {tried.Count - shown} more" : "";
        return message + "\n" + string.Join("\n", lines) + more;
    }
}

/// <summary>A CUDA driver, cuBLAS or NVRTC call returned an error.</summary>
public sealed class CudaException : Exception
{
    public CudaException(string call, int code, string description)
        : base($"{call} failed: {description} (code {code})")
    {
        Call = call;
        Code = code;
    }

    public string Call { get; }
    public int Code { get; }
}
