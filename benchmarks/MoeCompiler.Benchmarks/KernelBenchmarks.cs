using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Diagnostics;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Benchmarks;

/// <summary>Each kernel against the limit that bounds it: FMA peak for GEMM, read bandwidth for decoding.</summary>
internal static unsafe class KernelBenchmarks
{
    /// <summary><paramref name="parts"/>: gemm, decode, layer (all by default).</summary>
    public static void Run(BenchOptions options, params string[] parts)
    {
        if (parts.Length == 0) parts = ["gemm", "decode", "layer"];
        var limits = Limits.Measure(options);
        limits.Print();
        using var backend = new CpuBackend(options.Threads);
        Console.WriteLine($"backend: {backend.Name}");
        var random = new Random(1);
        if (parts.Contains("gemm")) Gemm(options, limits, backend, random);
        if (parts.Contains("decode")) Decode(options, limits, backend, random);
        if (parts.Contains("layer"))
        {
            Console.WriteLine();
            LayerBenchmarks.Run(backend, options, random);
        }
    }

    private static void Gemm(BenchOptions options, MachineLimits limits, CpuBackend backend, Random random)
    {
        bool blas = options.Blas && OpenBlas.TryLoad(options.Threads);
        if (options.Blas && !blas) Console.WriteLine("OpenBLAS: libopenblas.so.0 not found (apt install libopenblas0); skipped");
        Console.WriteLine();
        Console.WriteLine("f32 GEMM y[M,N] = x[M,K]·W[N,K]ᵀ       ms   GFLOP/s  of peak   OpenBLAS ms  ours/OpenBLAS");
        foreach (var (m, k, n) in new[] { (512, 2048, 5632), (2048, 2048, 2048), (600, 2048, 2048), (600, 2560, 10240) })
        {
            var x = RandomTensor(random, m, k);
            var w = RandomTensor(random, n, k);
            var y = Tensor.Allocate(DType.F32, m, n);
            double ours = Timing.Best(options.Repetitions, () => backend.Linear(x, w, null, y));
            double flops = 2.0 * m * n * k;
            string peer = "";
            if (blas)
            {
                double theirs = Timing.Best(options.Repetitions, () => OpenBlas.Linear((float*)x.Data, (float*)w.Data, (float*)y.Data, m, n, k));
                peer = $"{theirs * 1e3,12:F1}  {theirs / ours,13:F2}×";
            }
            Console.WriteLine($"  {m,5}×{k,5}×{n,6}                   {ours * 1e3,8:F1}  {flops / ours / 1e9,8:F1}  {flops / ours / 1e9 / limits.FmaGflops,6:P0}  {peer}");
            x.Storage.Dispose();
            w.Storage.Dispose();
            y.Storage.Dispose();
        }
    }

    private static void Decode(BenchOptions options, MachineLimits limits, CpuBackend backend, Random random)
    {

        Console.WriteLine();
        Console.WriteLine("decode matrix-vector (1 token)          bf16 ms  GB/s  of read BW    int8 ms  int8/bf16 tokens/s");
        foreach (var (k, n) in new[] { (2048, 5504), (2560, 10240), (2048, 151936) })
        {
            var x = RandomTensor(random, 1, k);
            var f32 = RandomTensor(random, n, k);
            var bf16 = ToBF16(f32);
            var i8 = Int8Quantization.Quantize(f32);
            f32.Storage.Dispose();
            var y = Tensor.Allocate(DType.F32, 1, n);
            int reps = options.Repetitions * 3;
            double tb = Timing.Best(reps, () => backend.Linear(x, bf16, null, y));
            double ti = Timing.Best(reps, () => backend.Linear(x, i8, null, y));
            double bytes = 2.0 * n * k;
            Console.WriteLine($"  {k,5} → {n,6}                       {tb * 1e3,8:F2}  {bytes / tb / 1e9,5:F1}  {bytes / tb / 1e9 / limits.ReadGBps,6:P0}     {ti * 1e3,8:F2}  {tb / ti,6:F2}×");
            bf16.Storage.Dispose();
            i8.Storage.Dispose();
        }
        Quantized(options, limits, backend, random);
    }

    /// <summary>The user-facing formats of docs/quantization.md (groups of 32, bf16 scales) against bf16 (packed, as a
    /// bound model runs it): decode of 1 row, small expert batches, and a prefill-sized GEMM.</summary>
    private static void Quantized(BenchOptions options, MachineLimits limits, CpuBackend backend, Random random)
    {
        Console.WriteLine();
        Console.WriteLine("int8 / q4 (groups of 32, bf16 scales) vs packed bf16     rows   bf16 ms    int8 ms    q4 ms   int8/bf16  q4/bf16  (tokens/s ratios)");
        foreach (var (k, n) in new[] { (2048, 5504), (5504, 2048), (2048, 151936) })
        {
            var f32 = RandomTensor(random, n, k);
            var bf16 = backend.PrepareLinearWeight(ToBF16(f32));
            var i8 = WeightQuantizer.Quantize(f32, QuantizationType.Int8);
            var q4 = WeightQuantizer.Quantize(f32, QuantizationType.Q4);
            f32.Storage.Dispose();
            int[] rowCounts = n > 100_000 ? [1] : [1, 2, 4, 8, 16, 600];
            foreach (int m in rowCounts)
            {
                var x = RandomTensor(random, m, k);
                var y = Tensor.Allocate(DType.F32, m, n);
                int reps = m >= 600 ? options.Repetitions : options.Repetitions * 3;
                double tb = Timing.Best(reps, () => backend.Linear(x, bf16, null, y));
                double ti = Timing.Best(reps, () => backend.Linear(x, i8, null, y));
                double tq = Timing.Best(reps, () => backend.Linear(x, q4, null, y));
                Console.WriteLine($"  {k,5} → {n,6}                                   {m,5}  {tb * 1e3,8:F2}  {ti * 1e3,8:F2}  {tq * 1e3,8:F2}   {tb / ti,7:F2}×  {tb / tq,6:F2}×");
                x.Storage.Dispose();
                y.Storage.Dispose();
            }
            i8.Storage.Dispose();
            q4.Storage.Dispose();
        }
    }

    public static Tensor RandomTensor(Random random, params int[] shape)
    {
        var t = Tensor.Allocate(DType.F32, shape);
        var data = t.AsFloats();
        for (int i = 0; i < data.Length; i++) data[i] = (float)(random.NextDouble() * 2 - 1) * 0.05f;
        return t;
    }

    public static Tensor ToBF16(Tensor f32)
    {
        var t = Tensor.Allocate(DType.BF16, f32.Shape.ToArray());
        var src = f32.AsFloats();
        var dst = t.AsSpan<ushort>();
        for (int i = 0; i < src.Length; i++) dst[i] = NumberFormats.FloatToBF16(src[i]);
        GC.KeepAlive(f32); // a span does not keep its tensor's memory alive
        return t;
    }
}
