using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Benchmarks;

/// <summary>
/// Decode products of int8/q4 weights with f32 activations (weights widened to f32) against the integer path
/// (activations quantised to int8 per group of 32, integer dot products; <see cref="CpuBackend.IntegerDotDecode"/>),
/// the blocked integer kernels (with and without AvxVnni), in the same process: the variants alternate round by round, and each keeps its best.
/// (The per-group kernels the blocked ones replaced were compared here until their removal; docs/quantization.md has the results.)
/// </summary>
internal static class IntegerDotBenchmarks
{
    public static void Run(BenchOptions options)
    {
        using var f32 = new CpuBackend(options.Threads) { IntegerDotDecode = false };
        using var vnni = new CpuBackend(options.Threads) { IntegerDotDecode = true };
        using var maddubs = new CpuBackend(options.Threads) { IntegerDotDecode = true, Vnni = false };
        Console.WriteLine($"backend: {vnni.Name}, AvxVnni {System.Runtime.Intrinsics.X86.AvxVnni.IsSupported}");
        // The bandwidth probe in the same run: the DRAM-streamed shapes (lm_head) are judged against it.
        Limits.Measure(options).Print();
        // Variants, alternating round by round: f32 activations; the blocked integer kernels with vpdpbusd and with
        // vpmaddubsw, and with vpdpbusd called once per weight row (Gemm.PerRowIntegerCalls) instead of with the row loop inside.
        var variants = new (string Name, CpuBackend Backend, int Prefetch, bool PerRowCalls, bool Q4Wide)[]
        {
            ("f32-act", f32, 4096, false, true), ("block+vnni", vnni, 4096, false, true),
            ("block+maddubs", maddubs, 4096, false, true), ("block+vnni/row", vnni, 4096, true, true),
            ("q4 256-bit", vnni, 4096, false, false),
        };
        // MOE_INTDOT_PREFETCH=0,512,2048: block+vnni again at these prefetch distances (bytes ahead; 0 = none).
        if (Environment.GetEnvironmentVariable("MOE_INTDOT_PREFETCH") is { Length: > 0 } distances)
            variants = [.. variants, .. distances.Split(',').Select(int.Parse).Select(d => ($"block pf{d}", vnni, d, false, true))];
        Console.WriteLine("type   k →      n  rows" + string.Concat(variants.Select(v => $"  {v.Name,14} ms  GB/s")) + "   block/f32  block/(one call per row) (speed)");
        var random = new Random(1);
        int rounds = options.Quick ? 3 : 7;
        // 2048 → 256 stays in L2 (compute cost per weight); the others are model shapes (L3-resident, and lm_head from DRAM).
        var shapes = Shapes("MOE_INTDOT_SHAPES", [(2048, 256), (2048, 5504), (5504, 2048), (2048, 2048), (2048, 151936)]);
        try
        {
            foreach (var (k, n) in shapes)
            {
                var source = KernelBenchmarks.RandomTensor(random, n, k);
                foreach (var type in new[] { QuantizationType.Int8, QuantizationType.Q4 })
                {
                    var w = WeightQuantizer.Quantize(source, type);
                    double bytes = WeightBytes(type, k, n);
                    foreach (int m in n > 100_000 ? new[] { 1 } : new[] { 1, 2, 4 })
                    {
                        var x = KernelBenchmarks.RandomTensor(random, m, k);
                        var y = Tensor.Allocate(DType.F32, m, n);
                        var t = variants.Select(_ => double.MaxValue).ToArray();
                        int reps = n > 100_000 ? 3 : n <= 256 ? 300 : 30;
                        for (int r = 0; r < rounds; r++)
                            for (int v = 0; v < variants.Length; v++)
                            {
                                Runtime.Kernels.Gemm.IntegerPrefetchBytes = variants[v].Prefetch;
                                Runtime.Kernels.Gemm.PerRowIntegerCalls = variants[v].PerRowCalls;
                                Runtime.Kernels.Gemm.Q4Wide = variants[v].Q4Wide;
                                var backend = variants[v].Backend;
                                t[v] = Math.Min(t[v], Timing.Best(reps, () => backend.Linear(x, w, null, y)));
                            }
                        Console.WriteLine($"{Label(type),-5} {k,5} → {n,6}  {m,4}" +
                                          string.Concat(t.Select(s => $"  {s * 1e3,17:F3} {bytes / s / 1e9,5:F1}")) +
                                          $"   {t[0] / t[1],8:F2}×  {t[3] / t[1],8:F2}×");
                        x.Storage.Dispose();
                        y.Storage.Dispose();
                    }
                    w.Storage.Dispose();
                }
                source.Storage.Dispose();
            }
        }
        finally
        {
            Runtime.Kernels.Gemm.IntegerPrefetchBytes = 4096;
            Runtime.Kernels.Gemm.PerRowIntegerCalls = false;
            Runtime.Kernels.Gemm.Q4Wide = true;
        }
        Limits.Measure(options).Print();
        if (Environment.GetEnvironmentVariable("MOE_INTDOT_STREAM") is { Length: > 0 } streamMiB)
            Streamed(options, vnni, int.Parse(streamMiB));
    }

    /// <summary>
    /// MOE_INTDOT_STREAM=MiB: decode as a model runs it: one activation row against a chain of distinct weights of
    /// the model's shapes, about MiB of weight bytes in all, so every product streams its weight from DRAM (as one
    /// decode step does) instead of the L3 of a repeated shape. Variants alternate round by round: the pool's task
    /// order (shared: consecutive tasks alternate between threads, as before 2026-12-06; contiguous: each thread
    /// streams its own run of rows, the default), the task size (32 or 256 weight rows, or 256 KiB of weight bytes,
    /// the default, <see cref="Runtime.Kernels.Gemm.MatVecTaskBytes"/>), and q4's 256-bit kernel against the default
    /// 512-bit one (<see cref="Runtime.Kernels.Gemm.Q4Wide"/>); bandwidth probe before and after. (Prefetch distances,
    /// scale prefetch and one call per weight row were compared here before; docs/quantization.md "Speed" has those
    /// results.)
    /// </summary>
    private static void Streamed(BenchOptions options, CpuBackend vnni, int mib)
    {
        var random = new Random(2);
        var variants = new (string Name, int RowsPerTask, bool Contiguous, bool Q4Wide)[]
        {
            ("shared r32", 32, false, true), ("shared 256K", 0, false, true),
            ("contig r32", 32, true, true), ("contig r256", 256, true, true), ("contig 256K", 0, true, true),
            ("q4 256-bit", 0, true, false),
        };
        Console.WriteLine($"streamed: about {mib} MiB of distinct weights per pass, one activation row");
        Limits.Measure(options).Print();
        Console.WriteLine("type   k →      n  count" + string.Concat(variants.Select(v => $"  {v.Name,16} ms  GB/s")) + "   contig 256K ÷ shared r32 (speed)");
        int rounds = options.Quick ? 3 : 5;
        try
        {
            foreach (var type in new[] { QuantizationType.Q4, QuantizationType.Int8 })
                foreach (var (k, n) in Shapes("MOE_INTDOT_STREAM_SHAPES", [(2048, 2048), (2048, 5504), (5504, 2048)]))
                {
                    double bytes = WeightBytes(type, k, n);
                    int count = Math.Max(2, (int)(mib * 1048576.0 / bytes));
                    var source = KernelBenchmarks.RandomTensor(random, n, k);
                    var weights = Enumerable.Range(0, count).Select(_ => WeightQuantizer.Quantize(source, type)).ToArray();
                    source.Storage.Dispose();
                    var x = KernelBenchmarks.RandomTensor(random, 1, k);
                    var y = Tensor.Allocate(DType.F32, 1, n);
                    var t = variants.Select(_ => double.MaxValue).ToArray();
                    for (int r = 0; r < rounds; r++)
                        for (int v = 0; v < variants.Length; v++)
                        {
                            Runtime.Kernels.Gemm.MatVecRowsPerTask = variants[v].RowsPerTask;
                            Runtime.Kernels.Gemm.ContiguousMatVecTasks = variants[v].Contiguous;
                            Runtime.Kernels.Gemm.Q4Wide = variants[v].Q4Wide;
                            t[v] = Math.Min(t[v], Timing.Best(2, () => { foreach (var w in weights) vnni.Linear(x, w, null, y); }));
                        }
                    Console.WriteLine($"{Label(type),-5} {k,5} → {n,6}  {count,5}" +
                                      string.Concat(t.Select(s => $"  {s * 1e3 / count,19:F3} {bytes * count / s / 1e9,5:F1}")) +
                                      $"   {t[0] / t[4],8:F2}×");
                    foreach (var w in weights) w.Storage.Dispose();
                    x.Storage.Dispose();
                    y.Storage.Dispose();
                }
        }
        finally
        {
            Runtime.Kernels.Gemm.MatVecRowsPerTask = 0;
            Runtime.Kernels.Gemm.ContiguousMatVecTasks = true;
            Runtime.Kernels.Gemm.Q4Wide = true;
        }
        Limits.Measure(options).Print();
    }

    /// <summary>Shapes (k, n) from an environment variable ("KxN,KxN"), else the defaults.</summary>
    private static (int K, int N)[] Shapes(string variable, (int K, int N)[] defaults)
        => Environment.GetEnvironmentVariable(variable) is { Length: > 0 } only
            ? only.Split(',').Select(p => p.Split('x')).Select(p => (int.Parse(p[0]), int.Parse(p[1]))).ToArray()
            : defaults;

    /// <summary>Bytes a product of a [n, k] weight of this type reads: the values and the bf16 scales (one per 32).</summary>
    private static double WeightBytes(QuantizationType type, int k, int n)
        => (double)n * k * (type == QuantizationType.Int8 ? 1 : 0.5) + (double)n * (k / 32) * 2;

    private static string Label(QuantizationType type) => type == QuantizationType.Int8 ? "int8" : "q4";
}
