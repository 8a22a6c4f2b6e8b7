using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Runtime.Intrinsics;
using System.Text;
using System.Text.Json;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

// Usage: DecodeBench [--variant MoeLlavaQwen4e] [--checkpoint DIR] [--prompt-tokens 32] [--decode-tokens 32]
//                    [--threads N] [--torch] [--python /usr/bin/python3]
// The checkpoint (random bf16, seeded) is written once to DIR/model.safetensors and reused; it is memory-mapped.
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
var options = BenchOptions.Parse(args);
var entry = ModelCatalog.Find(options.Variant) ?? throw new ArgumentException($"unknown variant {options.Variant}");
var d = entry.ModelDescription;
string checkpoint = Path.Combine(options.CheckpointDirectory ?? Path.Combine(Path.GetTempPath(), "moe-decode-bench", entry.Name), "model.safetensors");
if (!File.Exists(checkpoint))
{
    var write = Stopwatch.StartNew();
    RandomCheckpoint.Write(checkpoint, entry.Manifest, seed: 1);
    Console.WriteLine($"wrote {checkpoint} ({new FileInfo(checkpoint).Length / 1e9:F2} GB) in {write.Elapsed.TotalSeconds:F0} s");
}

using var backend = new CpuBackend(options.Threads);
Console.WriteLine($"{entry.Name}: {entry.TotalParameters / 1e9:F3} B parameters, {entry.ActivatedParameters / 1e9:F3} B activated; {backend.Name}");

var load = Stopwatch.StartNew();
var model = entry.Load(checkpoint, backend, new BindOptions());
Console.WriteLine($"bound in {load.Elapsed.TotalSeconds:F1} s");

var random = new Random(3);
var pixels = backend.Allocate(DType.F32, 3, d.ImageSize, d.ImageSize);
backend.Upload(Enumerable.Range(0, 3 * d.ImageSize * d.ImageSize).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray(), pixels);
var ids = new List<int> { PromptSplicer.ImageTokenId };
ids.AddRange(Enumerable.Range(0, options.PromptTokens).Select(_ => random.Next(3, d.TokenizerSize)));
var request = new GenerationRequest
{
    PromptIds = ids,
    Images = [pixels],
    Options = new GenerationOptions { MaxNewTokens = options.DecodeTokens + 1, StopOnEos = false },
};
var generator = new TextGenerator(model, backend);
generator.Generate(request with { Options = request.Options with { MaxNewTokens = 2 } }); // warm-up (page-in, JIT)
var result = generator.Generate(request);
var t = result.Timings;
long peakRss = Process.GetCurrentProcess().PeakWorkingSet64;
(model as IDisposable)?.Dispose();
// The machine's limits, measured after the run so their 1 GiB buffer does not count in the peak resident memory.
double bandwidth = MachineLimits.MemoryBandwidth(backend.Threads);
double fmaPeak = MachineLimits.FmaPeak(backend.Threads);
Console.WriteLine($"measured: memory bandwidth {bandwidth / 1e9:F1} GB/s, f32 FMA peak {fmaPeak / 1e9:F0} GFLOP/s");

var cost = WeightCost.Of(entry.Manifest, d);
double decodeLimit = bandwidth / cost.DecodeBytesPerToken;
double prefillFlops = cost.PrefillFlops(t.PromptTokens - t.ImageTokens, t.ImageTokens);
var rows = new List<(string, string)>
{
    ("time to first token (image + prefill)", $"{t.TimeToFirstToken.TotalSeconds:F2} s (image {t.ImageEncoding.TotalSeconds:F2} s, prefill of {t.PromptTokens} positions {t.Prefill.TotalSeconds:F2} s)"),
    ("prefill compute", $"{prefillFlops / 1e9:F1} GFLOP → {prefillFlops / t.TimeToFirstToken.TotalSeconds / 1e9:F1} GFLOP/s = {prefillFlops / t.TimeToFirstToken.TotalSeconds / fmaPeak:P0} of FMA peak"),
    ("decode", $"{t.DecodeTokensPerSecond:F2} tokens/s over {t.DecodeSteps} steps"),
    ("decode bandwidth limit", $"{cost.DecodeBytesPerToken / 1e9:F2} GB activated weights per token → {decodeLimit:F2} tokens/s; reached {t.DecodeTokensPerSecond / decodeLimit:P0}"),
    ("peak resident memory", $"{peakRss / 1e9:F2} GB = {(double)peakRss / cost.TouchedBytes:F2} × the {cost.TouchedBytes / 1e9:F2} GB of weights touched (activated + shared)"),
};
foreach (var (k, v) in rows) Console.WriteLine($"  {k,-40} {v}");

if (options.Torch)
{
    var torch = TorchReference.Run(options.Python, entry.Name, checkpoint, options.PromptTokens, options.DecodeTokens, backend.Threads);
    Console.WriteLine($"PyTorch reference ({torch.Dtype}, {torch.Threads} threads): time to first token {torch.TimeToFirstToken:F2} s, decode {torch.DecodeTokensPerSecond:F2} tokens/s");
    Console.WriteLine($"  ratio MoeCompiler / PyTorch: decode {t.DecodeTokensPerSecond / torch.DecodeTokensPerSecond:F2}×, time to first token {torch.TimeToFirstToken / t.TimeToFirstToken.TotalSeconds:F2}×");
}
return 0;

internal sealed record BenchOptions(string Variant, string? CheckpointDirectory, int PromptTokens, int DecodeTokens, int? Threads, bool Torch, string Python)
{
    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions("MoeLlavaQwen4e", null, 32, 32, null, false, "/usr/bin/python3");
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            o = args[i] switch
            {
                "--variant" => o with { Variant = Next() },
                "--checkpoint" => o with { CheckpointDirectory = Next() },
                "--prompt-tokens" => o with { PromptTokens = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--decode-tokens" => o with { DecodeTokens = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--threads" => o with { Threads = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--torch" => o with { Torch = true },
                "--python" => o with { Python = Next() },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
        }
        return o;
    }
}

/// <summary>Seeded random bf16 weights for every manifest entry, streamed to a safetensors file (never all in memory).</summary>
internal static class RandomCheckpoint
{
    public static void Write(string path, WeightManifest manifest, ulong seed)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var header = new Dictionary<string, object>();
        long offset = 0;
        foreach (var e in manifest.Entries)
        {
            long bytes = e.ElementCount * 2;
            header[e.Key] = new { dtype = "BF16", shape = e.Shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        byte[] json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - json.Length % 8) % 8;
        string partial = path + ".partial";
        using (var stream = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 22))
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)(json.Length + pad));
            stream.Write(length);
            stream.Write(json);
            for (int i = 0; i < pad; i++) stream.WriteByte((byte)' ');
            var buffer = new byte[1 << 22];
            ulong state = seed;
            foreach (var e in manifest.Entries)
            {
                bool bias = e.Key.EndsWith(".bias", StringComparison.Ordinal);
                long fanIn = e.Shape.Length >= 2 ? e.Shape.Skip(1).Aggregate(1L, (a, b) => a * b) : 1;
                bool norm = e.Role == WeightRole.Norm && !bias;
                // Uniform with the std of N(0, 1/fan_in) (embeddings: 1; biases: 0.02); norm weights 1 ± 0.1.
                float scale = (float)Math.Sqrt(3.0) * (float)(norm ? 0.1 : bias || e.Shape.Length < 2 ? 0.02 : e.Role == WeightRole.Embedding ? 1.0 : 1.0 / Math.Sqrt(fanIn));
                float center = norm ? 1f : 0f;
                long remaining = e.ElementCount;
                while (remaining > 0)
                {
                    int count = (int)Math.Min(remaining, buffer.Length / 2);
                    for (int i = 0; i < count; i++)
                    {
                        ulong z = state += 0x9E3779B97F4A7C15UL;
                        z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9UL;
                        float u = (float)((z >> 40) * (1.0 / (1UL << 24))) * 2f - 1f;
                        uint bits = BitConverter.SingleToUInt32Bits(center + scale * u);
                        BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(2 * i), (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16));
                    }
                    stream.Write(buffer, 0, 2 * count);
                    remaining -= count;
                }
            }
        }
        File.Move(partial, path, overwrite: false);
    }
}

/// <summary>What one token costs in weight bytes and FLOPs, from the manifest.</summary>
internal sealed record WeightCost(double DecodeBytesPerToken, double TouchedBytes, double LlmActivatedParams, double VisionParams, double ProjectorParams)
{
    public static WeightCost Of(WeightManifest manifest, ModelDescription d)
    {
        double expertFraction = d.Experts == 0 ? 1 : (double)d.TopK / d.Experts;
        double decodeBytes = 0, touched = 0, llm = 0, vision = 0, projector = 0;
        foreach (var e in manifest.Entries)
        {
            double n = e.ElementCount;
            switch (e.Role)
            {
                case WeightRole.Embedding:
                    decodeBytes += 2.0 * e.Shape[^1];  // one row per token
                    touched += 2.0 * e.Shape[^1] * 64; // a few rows
                    break;
                case WeightRole.Vision: vision += n; touched += 2 * n; break;
                case WeightRole.Projector: projector += n; touched += 2 * n; break;
                case WeightRole.Expert:
                    decodeBytes += 2 * n * expertFraction; llm += n * expertFraction; touched += 2 * n; break;
                default:
                    decodeBytes += 2 * n; llm += n; touched += 2 * n; break;
            }
        }
        return new WeightCost(decodeBytes, touched, llm, vision, projector);
    }

    /// <summary>2 FLOPs per multiply-add: LLM matmuls over every position, the tower over its patches + CLS,
    /// the projector over the image rows, attention scores and mixing (causal: half the square).</summary>
    public double PrefillFlops(int textTokens, int imageTokens)
    {
        int positions = textTokens + imageTokens;
        return 2 * LlmActivatedParams * positions + 2 * VisionParams * (imageTokens + 1) + 2 * ProjectorParams * imageTokens;
    }
}

internal static class MachineLimits
{
    /// <summary>Read bandwidth of a 1 GiB array summed by every thread over its own slice (best of 3).</summary>
    public static double MemoryBandwidth(int threads)
    {
        const long bytes = 1L << 30;
        var data = GC.AllocateUninitializedArray<float>((int)(bytes / 4));
        Array.Fill(data, 1f);
        double best = 0;
        for (int round = 0; round < 3; round++)
        {
            var sw = Stopwatch.StartNew();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                int chunk = data.Length / threads;
                var span = data.AsSpan(t * chunk, chunk);
                var acc = Vector<float>.Zero;
                int i = 0;
                for (; i + Vector<float>.Count <= span.Length; i += Vector<float>.Count) acc += new Vector<float>(span[i..]);
                GC.KeepAlive(acc);
            });
            best = Math.Max(best, bytes / sw.Elapsed.TotalSeconds);
        }
        return best;
    }

    /// <summary>f32 FMA throughput with independent accumulators per thread (best of 3).</summary>
    public static double FmaPeak(int threads)
    {
        const int iterations = 20_000_000;
        double best = 0;
        for (int round = 0; round < 3; round++)
        {
            var sw = Stopwatch.StartNew();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ =>
            {
                var a = Vector256.Create(1.0001f); var b = Vector256.Create(0.9999f);
                Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
                for (int i = 0; i < iterations; i++)
                {
                    c0 = Vector256.FusedMultiplyAdd(a, b, c0); c1 = Vector256.FusedMultiplyAdd(a, b, c1);
                    c2 = Vector256.FusedMultiplyAdd(a, b, c2); c3 = Vector256.FusedMultiplyAdd(a, b, c3);
                    c4 = Vector256.FusedMultiplyAdd(a, b, c4); c5 = Vector256.FusedMultiplyAdd(a, b, c5);
                    c6 = Vector256.FusedMultiplyAdd(a, b, c6); c7 = Vector256.FusedMultiplyAdd(a, b, c7);
                }
                GC.KeepAlive(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7);
            });
            best = Math.Max(best, threads * (double)iterations * 8 * 8 * 2 / sw.Elapsed.TotalSeconds);
        }
        return best;
    }
}

internal sealed record TorchResult(string Dtype, int Threads, double TimeToFirstToken, double DecodeTokensPerSecond);

internal static class TorchReference
{
    /// <summary>Runs tests/reference/bench_torch.py on the same checkpoint, prompt shape and thread count.</summary>
    public static TorchResult Run(string python, string variant, string checkpoint, int promptTokens, int decodeTokens, int threads)
    {
        string script = Path.Combine(RepoRoot(), "tests", "reference", "bench_torch.py");
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in new[] { script, "--variant", variant, "--checkpoint", checkpoint, "--prompt-tokens", promptTokens.ToString(CultureInfo.InvariantCulture),
                     "--decode-tokens", decodeTokens.ToString(CultureInfo.InvariantCulture), "--threads", threads.ToString(CultureInfo.InvariantCulture) })
            psi.ArgumentList.Add(a);
        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {python}");
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{script} failed with exit code {process.ExitCode}");
        string json = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last(l => l.StartsWith('{'));
        using var doc = JsonDocument.Parse(json);
        var r = doc.RootElement;
        return new TorchResult(r.GetProperty("dtype").GetString()!, r.GetProperty("threads").GetInt32(),
            r.GetProperty("timeToFirstToken").GetDouble(), r.GetProperty("decodeTokensPerSecond").GetDouble());
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "modelspecs", "moe-spec.schema.json"))) return dir.FullName;
        throw new InvalidOperationException("cannot find the repository root (modelspecs/) above " + AppContext.BaseDirectory);
    }
}
