using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Benchmarks;

/// <summary>
/// Prefill products (more than 4 rows) of int8/q4 weights: weight panels dequantised to f32 for the f32 GEMM against
/// the integer GEMM (activations quantised to int8 per group of 32, AvxVnni <c>vpdpbusd</c>;
/// <see cref="CpuBackend.IntegerGemmPrefill"/>), in the same process: the two alternate round by round, each keeps
/// its best, and the ratio is the figure to read on a busy machine.
/// </summary>
internal static class IntegerGemmBenchmarks
{
    public static void Run(BenchOptions options)
    {
        using var f32 = new CpuBackend(options.Threads) { IntegerGemmPrefill = false };
        using var integer = new CpuBackend(options.Threads) { IntegerGemmPrefill = true };
        Console.WriteLine($"backend: {integer.Name}, AvxVnni {System.Runtime.Intrinsics.X86.AvxVnni.IsSupported}, threads {options.Threads}");
        Console.WriteLine("type     m ×    k →    n   dequant-f32 ms  GOP/s   integer ms  GOP/s   integer/f32 (speed)");
        var random = new Random(1);
        int rounds = options.Quick ? 2 : 5;
        var shapes = Environment.GetEnvironmentVariable("MOE_IGEMM_SHAPES") is { Length: > 0 } only
            ? only.Split(',').Select(p => p.Split('x')).Select(p => (int.Parse(p[0]), int.Parse(p[1]), int.Parse(p[2]))).ToArray()
            : new[] { (608, 2048, 2048), (608, 2048, 5504), (608, 5504, 2048), (300, 2048, 5504), (16, 2048, 5504) };
        foreach (var (m, k, n) in shapes)
        {
            var source = KernelBenchmarks.RandomTensor(random, n, k);
            var x = KernelBenchmarks.RandomTensor(random, m, k);
            var y = Tensor.Allocate(DType.F32, m, n);
            foreach (var type in new[] { QuantizationType.Int8, QuantizationType.Q4 })
            {
                var w = WeightQuantizer.Quantize(source, type);
                double ops = 2.0 * m * k * n;
                int reps = ops > 5e9 ? 2 : ops > 5e8 ? 4 : 20;
                double t0 = double.MaxValue, t1 = double.MaxValue;
                for (int r = 0; r < rounds; r++)
                {
                    t0 = Math.Min(t0, Timing.Best(reps, () => f32.Linear(x, w, null, y)));
                    t1 = Math.Min(t1, Timing.Best(reps, () => integer.Linear(x, w, null, y)));
                }
                Console.WriteLine($"{(type == QuantizationType.Int8 ? "int8" : "q4"),-5} {m,5} × {k,5} → {n,5}   {t0 * 1e3,12:F2} {ops / t0 / 1e9,6:F1}   {t1 * 1e3,10:F2} {ops / t1 / 1e9,6:F1}   {t0 / t1,8:F2}×");
                w.Storage.Dispose();
            }
            source.Storage.Dispose();
            x.Storage.Dispose();
            y.Storage.Dispose();
        }
    }
}
