using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Benchmarks;

/// <summary>
/// Batched decode's matrix-vector products (<see cref="CpuBackend.LinearRows"/> on packed bf16 weights, MoE-LLaVA-Qwen
/// shapes) for 1, 2, 4 and 8 activation rows: time per call and its ratio to one row. Bytes streamed do not change
/// with the rows, so a ratio near 1 means the call is bound by memory, a ratio near the row count by arithmetic.
/// </summary>
internal static class RowBenchmarks
{
    public static void Run(BenchOptions options)
    {
        using var backend = new CpuBackend(options.Threads);
        Console.WriteLine($"backend: {backend.Name}");
        Console.WriteLine("packed bf16 LinearRows            rows     ms   × 1 row   GB/s (weight bytes)");
        var random = new Random(1);
        string? only = Environment.GetEnvironmentVariable("MOE_ROWS_ONLY");
        foreach (var (k, n, name) in new[] { (2048, 256, "l2-resident"), (2048, 6144, "qkv"), (2048, 2048, "attention out"), (2048, 5504, "FFN w1 / w2"), (5504, 2048, "FFN c_proj"), (2048, 151936, "lm_head") })
        {
            if (only is not null && !name.StartsWith(only, StringComparison.Ordinal)) continue;
            var f32 = KernelBenchmarks.RandomTensor(random, n, k);
            var weight = backend.PrepareLinearWeight(KernelBenchmarks.ToBF16(f32));
            f32.Storage.Dispose();
            double one = 0;
            foreach (int m in new[] { 1, 2, 4, 8 })
            {
                var x = KernelBenchmarks.RandomTensor(random, m, k);
                var y = Tensor.Allocate(DType.F32, m, n);
                int reps = n > 100_000 ? options.Repetitions : options.Repetitions * 10;
                double t = Timing.Best(reps, () => backend.LinearRows(x, weight, null, y));
                if (m == 1) one = t;
                Console.WriteLine($"  {k,5} → {n,6} {name,-14} {m,5}  {t * 1e3,7:F3}  {t / one,6:F2}×  {1.5 * n * k / t / 1e9,6:F1}");
                x.Storage.Dispose();
                y.Storage.Dispose();
            }
            weight.Storage.Dispose();
        }
    }
}
