using System.Diagnostics;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;
using GemmKernel = MoeCompiler.Runtime.Kernels.Gemm;

namespace MoeCompiler.Benchmarks;

/// <summary>
/// <c>gemmab</c>: the prefill / expert / vision GEMM shapes of MoeLlavaQwen4e with the weights as a bound model keeps
/// them (packed bf16), each blocking variant timed round by round in one process (old and new alternate, so a busy
/// machine disturbs both alike), against the FMA peak measured in the same run. Also the share of the time spent
/// packing (widening) weights.
/// </summary>
internal static class GemmAB
{
    public static void Run(BenchOptions options)
    {
        var limits = Limits.Measure(options);
        limits.Print();
        using var backend = new CpuBackend(options.Threads);
        var random = new Random(1);
        // A variant is a depth block, with "s" appended when compute tasks may split the panels (Gemm.SplitPanels).
        string[] variants = (Environment.GetEnvironmentVariable("GEMMAB_KC") ?? "1024,1024s").Split(',');
        int[] depthBlocks = variants.Select(v => int.Parse(v.TrimEnd('s'))).ToArray();
        bool[] splits = variants.Select(v => v.EndsWith('s')).ToArray();
        int rounds = options.Quick ? 3 : 7;
        Console.WriteLine($"backend: {backend.Name}; variants (depth block, s = panels split): {string.Join(" / ", variants)}; best of {rounds} alternating rounds");
        Console.WriteLine("shape (M×K→N, weights)          " + string.Join("", variants.Select(d => $"  {d,7}: ms  GFLOP/s  peak  pack%")) + "   first/last");
        var shapes = new (string Name, int M, int K, int N, bool F32)[]
        {
            ("llm qkv", 608, 2048, 6144, false),
            ("llm o", 608, 2048, 2048, false),
            ("llm gate/up", 608, 2048, 5504, false),
            ("llm down", 608, 5504, 2048, false),
            ("expert up", 300, 2048, 5504, false),
            ("expert down", 300, 5504, 2048, false),
            ("vit qkv", 577, 1024, 3072, false),
            ("vit fc1", 577, 1024, 4096, false),
            ("vit fc2", 577, 4096, 1024, false),
            ("llm gate/up f32", 608, 2048, 5504, true),
        };
        double saved = GemmKernel.DepthBlock;
        foreach (var (name, m, k, n, f32) in shapes)
        {
            var x = KernelBenchmarks.RandomTensor(random, m, k);
            var wf = KernelBenchmarks.RandomTensor(random, n, k);
            var w = f32 ? wf : backend.PrepareLinearWeight(KernelBenchmarks.ToBF16(wf));
            var y = Tensor.Allocate(DType.F32, m, n);
            var best = new double[depthBlocks.Length];
            var pack = new double[depthBlocks.Length];
            Array.Fill(best, double.MaxValue);
            for (int v = 0; v < depthBlocks.Length; v++) { GemmKernel.DepthBlock = depthBlocks[v]; GemmKernel.SplitPanels = splits[v]; backend.Linear(x, w, null, y); }
            for (int r = 0; r < rounds; r++)
                for (int v = 0; v < depthBlocks.Length; v++)
                {
                    GemmKernel.DepthBlock = depthBlocks[v];
                    GemmKernel.SplitPanels = splits[v];
                    GemmKernel.PackTicks = GemmKernel.ComputeTicks = 0;
                    GemmKernel.Profile = true;
                    double start = Timing.Now();
                    backend.Linear(x, w, null, y);
                    double t = Timing.Now() - start;
                    GemmKernel.Profile = false;
                    if (t < best[v])
                    {
                        best[v] = t;
                        pack[v] = GemmKernel.PackTicks / (double)(GemmKernel.PackTicks + GemmKernel.ComputeTicks);
                    }
                }
            double flops = 2.0 * m * n * k;
            string cells = string.Join("", Enumerable.Range(0, depthBlocks.Length).Select(v =>
                $"  {best[v] * 1e3,10:F2} {flops / best[v] / 1e9,8:F1} {flops / best[v] / 1e9 / limits.FmaGflops,5:P0} {pack[v],5:P0}"));
            Console.WriteLine($"  {name,-16} {m,4}×{k,4}→{n,4}{cells}   {best[0] / best[^1],6:F2}×");
            x.Storage.Dispose();
            if (!f32) wf.Storage.Dispose();
            w.Storage.Dispose();
            y.Storage.Dispose();
        }
        GemmKernel.DepthBlock = (int)saved;
        GemmKernel.SplitPanels = true;
        if (Environment.GetEnvironmentVariable("GEMMAB_ATTENTION") != "0") Attention(backend, random, rounds);
        Allocation(rounds);
    }

    /// <summary>An activation's life in a forward pass: allocate (zeroed), written once, released; without and with
    /// the cache of released blocks (NativeStorage.CacheBytes).</summary>
    private static void Allocation(int rounds)
    {
        Console.WriteLine();
        Console.WriteLine("activation allocate + write + release       no block cache ms   block cache ms   old/new");
        long saved = NativeStorage.CacheBytes;
        foreach (var (rows, columns) in new[] { (608, 2048), (608, 5504), (300, 5504) })
        {
            var best = new[] { double.MaxValue, double.MaxValue };
            for (int r = 0; r <= rounds; r++)
                for (int variant = 0; variant < 2; variant++)
                {
                    NativeStorage.CacheBytes = variant == 0 ? 0 : saved;
                    double start = Timing.Now();
                    for (int i = 0; i < 10; i++)
                    {
                        var t = Tensor.Allocate(DType.F32, rows, columns);
                        t.AsFloats().Fill(1f);
                        t.Storage.Dispose();
                    }
                    double time = (Timing.Now() - start) / 10;
                    if (r > 0) best[variant] = Math.Min(best[variant], time);
                }
            Console.WriteLine($"  {rows,4}×{columns,4} f32 ({rows * columns * 4 / 1e6:F1} MB)                  {best[0] * 1e3,10:F3}   {best[1] * 1e3,14:F3}   {best[0] / best[1],6:F2}×");
        }
        NativeStorage.CacheBytes = saved;
    }

    /// <summary>Prefill attention: one value pass per query (old) against four queries per value pass (new).</summary>
    private static void Attention(CpuBackend backend, Random random, int rounds)
    {
        Console.WriteLine();
        Console.WriteLine("attention (queries × keys, heads × dim)      per-query value sums ms   four-query value sums ms   old/new");
        foreach (var (name, t, heads, dim, causal, bf16) in new[]
        {
            ("llm prefill, bf16 kv", 608, 16, 128, true, true),
            ("llm prefill, f32 kv", 608, 16, 128, true, false),
            ("vision tower", 577, 16, 64, false, false),
        })
        {
            var q = KernelBenchmarks.RandomTensor(random, t, heads * dim);
            var kf = KernelBenchmarks.RandomTensor(random, t, heads * dim);
            var vf = KernelBenchmarks.RandomTensor(random, t, heads * dim);
            var k = bf16 ? KernelBenchmarks.ToBF16(kf) : kf;
            var v = bf16 ? KernelBenchmarks.ToBF16(vf) : vf;
            var y = Tensor.Allocate(DType.F32, t, heads * dim);
            var best = new[] { double.MaxValue, double.MaxValue };
            for (int r = 0; r <= rounds; r++)
                for (int variant = 0; variant < 2; variant++)
                {
                    MoeCompiler.Runtime.Kernels.AttentionKernel.SharedValueSums = variant == 1;
                    double start = Timing.Now();
                    backend.Attention(q, k, v, y, heads, heads, dim, causal, 0);
                    double time = Timing.Now() - start;
                    if (r > 0) best[variant] = Math.Min(best[variant], time);
                }
            MoeCompiler.Runtime.Kernels.AttentionKernel.SharedValueSums = true;
            Console.WriteLine($"  {name,-22} {t,4}×{t,4}, {heads,2}×{dim,3}   {best[0] * 1e3,12:F2}   {best[1] * 1e3,24:F2}   {best[0] / best[1],8:F2}×");
        }
    }
}
