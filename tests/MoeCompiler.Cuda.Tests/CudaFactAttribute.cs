namespace MoeCompiler.Cuda.Tests;

/// <summary>
/// A fact that needs a CUDA device: skipped at discovery, visibly, with the probe's reason ("no CUDA device: ...")
/// when there is none. Set MOE_REQUIRE_CUDA=1 to make such tests fail instead (the device script does).
/// </summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute()
    {
        if (!CudaProbe.TryFindDevice(out string description) && Environment.GetEnvironmentVariable("MOE_REQUIRE_CUDA") != "1")
            Skip = description;
    }
}

/// <summary>The theory counterpart of <see cref="CudaFactAttribute"/>.</summary>
public sealed class CudaTheoryAttribute : TheoryAttribute
{
    public CudaTheoryAttribute()
    {
        if (!CudaProbe.TryFindDevice(out string description) && Environment.GetEnvironmentVariable("MOE_REQUIRE_CUDA") != "1")
            Skip = description;
    }
}
