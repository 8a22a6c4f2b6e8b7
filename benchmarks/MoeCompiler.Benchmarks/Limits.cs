using MoeCompiler.Runtime.Diagnostics;

namespace MoeCompiler.Benchmarks;

/// <summary>The machine's limits, measured by the runtime's probe with this run's options.</summary>
internal static class Limits
{
    public static MachineLimits Measure(BenchOptions options) =>
        MachineLimits.Measure(options.Threads, options.Quick, Timing.UseCpuTime);

    public static void Print(this MachineLimits limits) => Console.WriteLine($"machine: {limits.Describe()}");
}
