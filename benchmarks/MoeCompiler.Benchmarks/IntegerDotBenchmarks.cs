using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Benchmarks;

/// <summary>
/// Decode products of int8/q4 weights with f32 activations (weights widened to f32) against the integer path
/// (activations quantised to int8 per group of 32, integer dot products; <see cref="CpuBackend.IntegerDotDecode"/>),
/// with and without AvxVnni, in the same process: the variants alternate round by round, and each keeps its best.
/// </summary>
internal static class IntegerDotBenchmarks
{
    public static void Run(BenchOptions options)
    {
        using var f32 = new CpuBackend(options.Threads) { IntegerDotDecode = false };
        using var vnni = new CpuBackend(options.Threads) { IntegerDotDecode = true };
        using var maddubs = new CpuBackend(options.Threads) { IntegerDotDecode = true, Vnni = false };
        Console.WriteLine($"backend: {vnni.Name}, AvxVnni {System.Runtime.Intrinsics.X86.AvxVnni.IsSupported}");
        Console.WriteLine("type   k →      n  rows   f32-act ms  GB/s   int+vnni ms  GB/s   int+maddubs ms  GB/s   vnni/f32  maddubs/f32 (speed)");
        var random = new Random(1);
        int rounds = options.Quick ? 3 : 7;
        // 2048 → 256 stays in L2 (compute cost per weight); the others are model shapes (L3-resident, and lm_head from DRAM).
        var shapes = Environment.GetEnvironmentVariable("MOE_INTDOT_SHAPES") is { Length: > 0 } only
            ? only.Split(',').Select(p => p.Split('x')).Select(p => (int.Parse(p[0]), int.Parse(p[1]))).ToArray()
            : new[] { (2048, 256), (2048, 5504), (5504, 2048), (2048, 2048), (2048, 151936) };
        foreach (var (k, n) in shapes)
        {
            var source = KernelBenchmarks.RandomTensor(random, n, k);
            foreach (var type in new[] { QuantizationType.Int8, QuantizationType.Q4 })
            {
                var w = WeightQuantizer.Quantize(source, type);
                double bytes = (double)n * k * (type == QuantizationType.Int8 ? 1 : 0.5) + (double)n * (k / 32) * 2;
                foreach (int m in n > 100_000 ? new[] { 1 } : new[] { 1, 2, 4 })
                {
                    var x = KernelBenchmarks.RandomTensor(random, m, k);
                    var y = Tensor.Allocate(DType.F32, m, n);
                    double t0 = double.MaxValue, t1 = double.MaxValue, t2 = double.MaxValue;
                    int reps = n > 100_000 ? 3 : n <= 256 ? 300 : 30;
                    for (int r = 0; r < rounds; r++)
                    {
                        t0 = Math.Min(t0, Timing.Best(reps, () => f32.Linear(x, w, null, y)));
                        t1 = Math.Min(t1, Timing.Best(reps, () => vnni.Linear(x, w, null, y)));
                        t2 = Math.Min(t2, Timing.Best(reps, () => maddubs.Linear(x, w, null, y)));
                    }
                    Console.WriteLine($"{(type == QuantizationType.Int8 ? "int8" : "q4"),-5} {k,5} → {n,6}  {m,4}   {t0 * 1e3,9:F3} {bytes / t0 / 1e9,5:F1}   {t1 * 1e3,9:F3} {bytes / t1 / 1e9,5:F1}   {t2 * 1e3,12:F3} {bytes / t2 / 1e9,5:F1}     {t0 / t1,5:F2}×    {t0 / t2,5:F2}×");
                    x.Storage.Dispose();
                    y.Storage.Dispose();
                }
                w.Storage.Dispose();
            }
            source.Storage.Dispose();
        }
    }
}
