namespace MoeCompiler.Tokenizers.Tests.Benchmarks;

/// <summary>A fact that runs only with MOE_SLOW_TESTS=1 and is reported as skipped otherwise.</summary>
public sealed class SlowFactAttribute : FactAttribute
{
    public SlowFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("MOE_SLOW_TESTS") != "1") Skip = "slow: set MOE_SLOW_TESTS=1 to run";
    }
}
