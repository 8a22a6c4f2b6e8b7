using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Benchmarks;

/// <summary>
/// <see cref="RowBenchmarks"/> as a decode step sees it: each shape's weight is packed in several copies (over 256 MB
/// in all) that every timed pass runs through in turn, so the weights stream from memory instead of staying in L3.
/// Rounds alternate the row counts 1–4 and each keeps its best, so the ratios compare runs taken seconds apart (use
/// <c>--threads 1 --cpu-time</c> on a busy machine).
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
            foreach (var t in xs.Concat(ys)) t.Storage.Dispose();
            foreach (var w in weights) w.Storage.Dispose();
        }
    }
}
