using System.Diagnostics;
using System.Globalization;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda.Tests;

/// <summary>
/// Device timings for docs/performance.md (run by scripts/gpu, never by unit tests): GEMV bandwidth for decode
/// shapes, bf16 GEMM throughput for prefill, flash-decoding attention, and a dense decoder stack at Mistral-7B
/// sizes (hidden 4096, 32 heads, 8 KV heads, FFN 14336; `--layers` of them, random bf16 weights) eager and as
/// a CUDA graph. Bandwidth is reported against the HBM peak (known for H100/H200 or `--peak-gbps`), GEMM against
/// the dense bf16 tensor-core peak (`--peak-tflops`).
/// </summary>
internal static class DeviceBenchmarks
{
    /// <summary>Model sizes; <c>--smoke</c> shrinks them so the whole benchmark can be checked under the CPU emulator.</summary>
    private sealed record Sizes(int Hidden, int Heads, int KvHeads, int HeadDim, int Ffn, int Context, int Vocab, int Keys, int[] PrefillRows);

    private static readonly Sizes Full = new(4096, 32, 8, 128, 14336, 1024, 32000, 4096, [512, 2048]);
    private static readonly Sizes Smoke = new(256, 4, 2, 64, 512, 64, 1000, 300, [16]);

    public static int Run(string[] args)
    {
        if (!CudaBackend.TryCreate(out var created, out string reason))
        {
            Console.Error.WriteLine(reason);
            return 3;
        }
        using var gpu = created!;
        double peakGbps = Option(args, "--peak-gbps") ?? KnownPeakGbps(gpu.DeviceName);
        double peakTflops = Option(args, "--peak-tflops") ?? KnownPeakTflops(gpu.DeviceName);
        int layers = (int)(Option(args, "--layers") ?? 8);
        var z = args.Contains("--smoke") ? Smoke : Full;
        int Hidden = z.Hidden, Heads = z.Heads, KvHeads = z.KvHeads, HeadDim = z.HeadDim, Ffn = z.Ffn, Context = z.Context;
        int iterations = args.Contains("--smoke") ? 1 : 50;
        Console.WriteLine($"# {gpu.Name}; kernels {gpu.KernelArchitecture}; peak {peakGbps:F0} GB/s, {peakTflops:F0} bf16 TFLOPS (dense)");
        Console.WriteLine("| case | time/iter | achieved | of peak |");
        Console.WriteLine("|---|---|---|---|");

        var source = RandomBf16(checked(Math.Max(z.Vocab, 2 * Ffn) * Hidden));
        Tensor Weight(int rows, int cols) => gpu.PrepareWeight(new Tensor(source, 0, DType.BF16, [rows, cols]));

        foreach (var (n, k, label) in new[] { (Hidden, Hidden, "q/o proj"), ((Heads + 2 * KvHeads) * HeadDim, Hidden, "qkv proj"), (2 * Ffn, Hidden, "gate+up"), (Hidden, Ffn, "down"), (z.Vocab, Hidden, "lm head") })
        {
            var w = Weight(n, k);
            var x = gpu.Allocate(DType.F32, 1, k);
            var y = gpu.Allocate(DType.F32, 1, n);
            gpu.Upload(TestData.Random(k, 1), x);
            double seconds = Time(gpu, () => gpu.Linear(x, w, null, y), iterations);
            double gbps = ((double)n * k * 2 + k * 4 + n * 4) / seconds / 1e9;
            Row($"GEMV bf16 1x{k} -> {n} ({label})", seconds, $"{gbps:F0} GB/s", gbps / peakGbps);
            w.Storage.Dispose();
        }

        foreach (int m in z.PrefillRows)
        {
            var w = Weight(Hidden, Hidden);
            var x = gpu.Allocate(DType.F32, m, Hidden);
            var y = gpu.Allocate(DType.F32, m, Hidden);
            gpu.Upload(TestData.Random(m * Hidden, 2), x);
            double seconds = Time(gpu, () => gpu.Linear(x, w, null, y), Math.Min(iterations, 20));
            double tflops = 2.0 * m * Hidden * Hidden / seconds / 1e12;
            Row($"GEMM bf16 {m}x{Hidden}x{Hidden} (prefill; incl. f32->bf16 of x)", seconds, $"{tflops:F0} TFLOPS", tflops / peakTflops);
        }

        {
            var q = gpu.Allocate(DType.F32, 1, Heads * HeadDim);
            var k = gpu.Allocate(DType.F32, z.Keys, KvHeads * HeadDim);
            var v = gpu.Allocate(DType.F32, z.Keys, KvHeads * HeadDim);
            var y = gpu.Allocate(DType.F32, 1, Heads * HeadDim);
            double seconds = Time(gpu, () => gpu.Attention(q, k, v, y, Heads, KvHeads, HeadDim, true, z.Keys - 1), iterations);
            double gbps = 2.0 * z.Keys * KvHeads * HeadDim * 4 / seconds / 1e9;
            Row($"attention decode, {z.Keys} keys (f32 KV)", seconds, $"{gbps:F0} GB/s", gbps / peakGbps);
        }

        {
            var stack = new DecodeStack(gpu, Weight, layers, z);
            double eager = Time(gpu, () => stack.Step(Context - 1), Math.Min(iterations, 10));
            double weightBytes = stack.WeightBytes;
            Row($"decode step, {layers} dense layers @{(z == Full ? "7B" : "smoke")} sizes, eager", eager, $"{weightBytes / eager / 1e9:F0} GB/s", weightBytes / eager / 1e9 / peakGbps);
            using var graph = new CudaGraphDecode(gpu);
            double graphed = Time(gpu, () => graph.Run(() => stack.Step(Context - 1)), Math.Min(iterations, 10));
            Row($"decode step, {layers} dense layers @{(z == Full ? "7B" : "smoke")} sizes, CUDA graph", graphed, $"{weightBytes / graphed / 1e9:F0} GB/s", weightBytes / graphed / 1e9 / peakGbps);
            Console.WriteLine($"\ngraph: {graph.Instantiations} instantiations, {graph.Updates} updates{(graph.Enabled ? "" : ", disabled: " + graph.DisabledReason)}");
        }
        Console.WriteLine($"allocator: {gpu.Allocator.ReservedBytes / (1 << 20)} MiB reserved, {gpu.Allocator.DeviceAllocations} device allocations, {gpu.Allocator.CacheHits} cache hits");
        return 0;
    }

    /// <summary>Dense pre-norm decoder layers (attention + SwiGLU FFN) at one position, batch 1, no host sync.</summary>
    private sealed class DecodeStack
    {
        private readonly CudaBackend _gpu;
        private readonly (Tensor Norm, Tensor Qkv, Tensor O, Tensor Norm2, Tensor GateUp, Tensor Down, Tensor Keys, Tensor Values)[] _layers;
        private readonly Tensor _x;
        private readonly int Hidden, Heads, KvHeads, HeadDim, Ffn;

        public DecodeStack(CudaBackend gpu, Func<int, int, Tensor> weight, int layers, Sizes z)
        {
            _gpu = gpu;
            (Hidden, Heads, KvHeads, HeadDim, Ffn) = (z.Hidden, z.Heads, z.KvHeads, z.HeadDim, z.Ffn);
            int Context = z.Context;
            var ones = Tensor.FromFloats(Enumerable.Repeat(1f, Hidden).ToArray(), Hidden);
            _layers = Enumerable.Range(0, layers).Select(_ => (gpu.PrepareWeight(ones), weight((Heads + 2 * KvHeads) * HeadDim, Hidden), weight(Hidden, Heads * HeadDim),
                gpu.PrepareWeight(ones), weight(2 * Ffn, Hidden), weight(Hidden, Ffn),
                gpu.Allocate(DType.F32, Context, KvHeads * HeadDim), gpu.Allocate(DType.F32, Context, KvHeads * HeadDim))).ToArray();
            _x = gpu.Allocate(DType.F32, 1, Hidden);
            gpu.Upload(TestData.Random(Hidden, 3, 0.1f), _x);
            WeightBytes = (double)layers * 2 * ((Heads + 2 * KvHeads) * HeadDim * Hidden + Hidden * Heads * HeadDim + 2.0 * Ffn * Hidden + Hidden * Ffn);
        }

        public double WeightBytes { get; }

        public void Step(int position)
        {
            var g = _gpu;
            int qw = Heads * HeadDim, kw = KvHeads * HeadDim;
            foreach (var l in _layers)
            {
                var h = g.Allocate(DType.F32, 1, Hidden);
                g.RmsNorm(_x, l.Norm, 1e-5f, h);
                var qkv = g.Allocate(DType.F32, 1, qw + 2 * kw);
                g.Linear(h, l.Qkv, null, qkv);
                var flat = qkv.Reshape(qw + 2 * kw);
                var q = g.Allocate(DType.F32, 1, qw);
                g.Copy(new Tensor(flat.Storage, flat.ByteOffset, DType.F32, [1, qw]), q);
                g.CopyRows(new Tensor(flat.Storage, flat.ByteOffset + qw * 4L, DType.F32, [1, kw]), 0, l.Keys, position, 1);
                g.CopyRows(new Tensor(flat.Storage, flat.ByteOffset + (qw + kw) * 4L, DType.F32, [1, kw]), 0, l.Values, position, 1);
                g.Rotary(q, Heads, HeadDim, HeadDim, 10000f, position);
                g.Rotary(l.Keys.SliceRows(position, 1), KvHeads, HeadDim, HeadDim, 10000f, position);
                var attention = g.Allocate(DType.F32, 1, qw);
                g.Attention(q, l.Keys.SliceRows(0, position + 1), l.Values.SliceRows(0, position + 1), attention, Heads, KvHeads, HeadDim, true, position);
                var projected = g.Allocate(DType.F32, 1, Hidden);
                g.Linear(attention, l.O, null, projected);
                g.Add(_x, projected, _x);
                g.RmsNorm(_x, l.Norm2, 1e-5f, h);
                var gateUp = g.Allocate(DType.F32, 2, Ffn); // row 0 gate, row 1 up (one GEMV reads both weights)
                g.Linear(h, l.GateUp, null, gateUp.Reshape(1, 2 * Ffn));
                var act = g.Allocate(DType.F32, 1, Ffn);
                g.SwiGlu(gateUp.SliceRows(0, 1), gateUp.SliceRows(1, 1), act);
                var down = g.Allocate(DType.F32, 1, Hidden);
                g.Linear(act, l.Down, null, down);
                g.Add(_x, down, _x);
                foreach (var t in new[] { h, qkv, q, attention, projected, gateUp, act, down }) t.Storage.Dispose();
            }
        }
    }

    private static double Time(CudaBackend gpu, Action action, int iterations)
    {
        for (int i = 0; i < 3; i++) action();
        gpu.Synchronize();
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < iterations; i++) action();
        gpu.Synchronize();
        return watch.Elapsed.TotalSeconds / iterations;
    }

    private static void Row(string label, double seconds, string achieved, double fraction) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {label} | {seconds * 1e6:F1} µs | {achieved} | {fraction * 100:F0}% |"));

    private static ManagedStorage RandomBf16(int count)
    {
        var storage = new ManagedStorage(count * 2L);
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(storage.Array.AsSpan());
        var random = new Random(7);
        for (int i = 0; i < words.Length; i++) words[i] = HostConversions.FloatToBf16((float)(random.NextDouble() - 0.5) * 0.05f);
        return storage;
    }

    private static double? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? double.Parse(args[i + 1], CultureInfo.InvariantCulture) : null;
    }

    private static double KnownPeakGbps(string device) => DevicePeaks.HbmGBps(device);

    private static double KnownPeakTflops(string device) => DevicePeaks.Bf16Tflops(device);
}
