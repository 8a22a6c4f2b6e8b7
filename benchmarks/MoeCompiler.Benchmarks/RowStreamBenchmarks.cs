using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Benchmarks;

/// <summary>
/// <see cref="RowBenchmarks"/> as a decode step sees it: each shape's weight is packed in several copies (over 256 MB
/// in all) that every timed pass runs through in turn, so the weights stream from memory instead of staying in L3.
/// Rounds alternate the row counts 1–4 and each keeps its best, so the ratios compare runs taken seconds apart (use
/// <c>--threads 1 --cpu-time</c> on a busy machine). A second table alternates the pool's task order and size for 1
/// and 4 rows: shared order with 32 rows per task (as before 2026-12-06), shared with 256 KiB tasks, and the default
/// (contiguous, 256 KiB; <see cref="Runtime.Kernels.Gemm.MatVecTaskBytes"/>).
/// </summary>
internal static class RowStreamBenchmarks
{
    public static void Run(BenchOptions options)
    {
        using var backend = new CpuBackend(options.Threads);
        int rounds = options.Repetitions;
        Console.WriteLine($"backend: {backend.Name}; best of {rounds} rounds, weights cycled through copies (> 256 MB)");
        Console.WriteLine("packed bf16 LinearRows, weights from memory   ms per call for 1 / 2 / 3 / 4 rows (× 1 row)");
        var random = new Random(1);
        string? only = Environment.GetEnvironmentVariable("MOE_ROWS_ONLY");
        foreach (var (k, n, name) in new[] { (2048, 2048, "attention out"), (2048, 5504, "FFN up/gate"), (5504, 2048, "FFN down"), (2048, 151936, "lm_head") })
        {
            if (only is not null && !name.StartsWith(only, StringComparison.Ordinal)) continue;
            int copies = (int)Math.Max(1, 300_000_000L / (1.5 * n * k));
            var f32 = KernelBenchmarks.RandomTensor(random, n, k);
            var weights = Enumerable.Range(0, copies).Select(_ => backend.PrepareLinearWeight(KernelBenchmarks.ToBF16(f32))).ToArray();
            f32.Storage.Dispose();
            int[] counts = [1, 2, 3, 4];
            var xs = counts.Select(m => KernelBenchmarks.RandomTensor(random, m, k)).ToArray();
            var ys = counts.Select(m => Tensor.Allocate(DType.F32, m, n)).ToArray();
            var best = new double[counts.Length];
            Array.Fill(best, double.MaxValue);
            for (int round = 0; round <= rounds; round++)
                for (int c = 0; c < counts.Length; c++)
                {
                    double start = Timing.Now();
                    foreach (var w in weights) backend.LinearRows(xs[c], w, null, ys[c]);
                    // Round 0 warms up (JIT, page faults) and is not kept.
                    if (round > 0) best[c] = Math.Min(best[c], (Timing.Now() - start) / copies);
                }
            Console.WriteLine($"  {k,5} → {n,6} {name,-14} ({copies,2} copies) " +
                string.Join("  ", best.Select(t => $"{t * 1e3,7:F3} ({t / best[0]:F2}×)")));
            TaskOrder(backend, rounds, name, k, n, copies, weights, xs[0], ys[0], xs[3], ys[3]);
            foreach (var t in xs.Concat(ys)) t.Storage.Dispose();
            foreach (var w in weights) w.Storage.Dispose();
        }
        }

    private static void TaskOrder(CpuBackend backend, int rounds, string name, int k, int n, int copies, Tensor[] weights,
        Tensor x1, Tensor y1, Tensor x4, Tensor y4)
    {
        var variants = new (string Name, bool Contiguous, int Rows)[] { ("shared r32", false, 32), ("shared 256K", false, 0), ("contig 256K", true, 0) };
        var best = new double[variants.Length, 2];
        for (int v = 0; v < variants.Length; v++) best[v, 0] = best[v, 1] = double.MaxValue;
        try
        {
            for (int round = 0; round <= rounds; round++)
                for (int v = 0; v < variants.Length; v++)
                {
                    Runtime.Kernels.Gemm.ContiguousMatVecTasks = variants[v].Contiguous;
                    Runtime.Kernels.Gemm.MatVecRowsPerTask = variants[v].Rows;
                    for (int r = 0; r < 2; r++)
                    {
                        var (x, y) = r == 0 ? (x1, y1) : (x4, y4);
                        double start = Timing.Now();
                        foreach (var w in weights) backend.LinearRows(x, w, null, y);
                        if (round > 0) best[v, r] = Math.Min(best[v, r], (Timing.Now() - start) / copies);
                    }
                }
        }
        finally
        {
            Runtime.Kernels.Gemm.ContiguousMatVecTasks = true;
            Runtime.Kernels.Gemm.MatVecRowsPerTask = 0;
        }
        Console.WriteLine($"  {k,5} → {n,6} {name,-14} task order, ms per call, 1 row / 4 rows:  " + string.Join("  ",
            Enumerable.Range(0, variants.Length).Select(v => $"{variants[v].Name} {best[v, 0] * 1e3:F3} / {best[v, 1] * 1e3:F3}")) +
            $"   default ÷ shared r32 (speed): {best[0, 0] / best[2, 0]:F2}× / {best[0, 1] / best[2, 1]:F2}×");
    }
}
