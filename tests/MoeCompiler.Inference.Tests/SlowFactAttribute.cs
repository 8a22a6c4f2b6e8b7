namespace MoeCompiler.Inference.Tests;

/// <summary>A test that writes or runs gigabytes: reported as skipped unless MOE_SLOW_TESTS=1.</summary>
public sealed class SlowFactAttribute : FactAttribute
{
    public SlowFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("MOE_SLOW_TESTS") != "1") Skip = "slow: set MOE_SLOW_TESTS=1 to run";
    }
}
