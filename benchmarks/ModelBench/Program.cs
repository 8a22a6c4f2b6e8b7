using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using MoeCompiler.Imaging;
using MoeCompiler.Imaging.Processing;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Diagnostics;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;
using ModelBench;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
// A/B of the runtime's cache of released activation blocks (MoeCompiler.Runtime.Tensors.NativeStorage.CacheBytes).
if (Environment.GetEnvironmentVariable("MOE_BLOCK_CACHE_MB") is { } blockCacheMb)
    MoeCompiler.Runtime.Tensors.NativeStorage.CacheBytes = long.Parse(blockCacheMb, CultureInfo.InvariantCulture) << 20;

BenchOptions options;
try
{
    options = BenchOptions.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine("error: " + e.Message);
    Console.Error.WriteLine(BenchOptions.Usage);
    return 2;
}
if (options.ShowHelp)
{
    Console.WriteLine(BenchOptions.Usage);
    return 0;
}
if (options.List)
{
    foreach (var v in ModelCatalog.Variants)
        Console.WriteLine($"{v.Name,-24} {v.TotalParameters / 1e9,6:F2}B total, {v.ActivatedParameters / 1e9,5:F2}B activated  {v.DisplayName}");
    return 0;
}

var entry = ModelCatalog.Find(options.Model);
if (entry is null)
{
    Console.Error.WriteLine($"error: no variant named '{options.Model}' in this build; --list shows them");
    return 2;
}

try
{
    return options.StreamCounts.Length > 0 ? BatchedDecodeBench.Run(entry, options) : Bench.Run(entry, options);
}
catch (Exception e) when (e is IOException or CheckpointException or CheckpointBindingException or BenchException or UnauthorizedAccessException)
{
    Console.Error.WriteLine("error: " + e.Message);
    if (e is CheckpointBindingException binding)
        foreach (var p in binding.Problems.Take(20)) Console.Error.WriteLine("  " + p);
    return 1;
}

namespace ModelBench
{
    public sealed class BenchException(string message) : Exception(message);

    public sealed record BenchOptions
    {
        public string Model { get; init; } = "MoeLlavaQwen4e";
        public string CacheDirectory { get; init; } = Path.Combine(".artifacts", "bench-weights");
        public ulong Seed { get; init; } = 1;
        public int PromptTokens { get; init; } = 32;
        public int DecodeSteps { get; init; } = 32;
        /// <summary>Decode rounds the steps are split into; each round is ours, then PyTorch's, then a bandwidth probe.</summary>
        public int Rounds { get; init; } = 4;
        public int Threads { get; init; } = Environment.ProcessorCount;
        public string? Out { get; init; }
        public string Python { get; init; } = "/usr/bin/python3";
        public bool RunPyTorch { get; init; } = true;
        /// <summary>PyTorch configurations to run, in order (each a separate subprocess and column).</summary>
        public IReadOnlyList<string> TorchDTypes { get; init; } = ["bf16"];
        /// <summary>PeerBench peers (benchmarks/PeerBench) to run beside ours, each a column: llama-bf16,
        /// llama-q8_0, llama-q4_0, llama-q4_k, torch-bf16.</summary>
        public IReadOnlyList<string> Peers { get; init; } = [];
        public string? PeerCommand { get; init; }
        public string? GgufDirectory { get; init; }
        public string? JsonOut { get; init; }

        public static readonly string[] KnownPeers = ["llama-bf16", "llama-q8_0", "llama-q4_0", "llama-q4_k", "torch-bf16"];
        public int BandwidthMiB { get; init; } = 256;
        /// <summary>Our weights: "bf16" (the random checkpoint as written) or "int8" / "q4" (a quantised copy of it,
        /// written once by <see cref="CheckpointQuantizer"/> next to it and mapped like any checkpoint).</summary>
        public string WeightType { get; init; } = "bf16";
        public bool List { get; init; }
        public bool PrepareOnly { get; init; }
        public bool ShowHelp { get; init; }
        /// <summary>Non-empty: the batched-decode mode (<see cref="BatchedDecodeBench"/>) with these stream counts.</summary>
        public int[] StreamCounts { get; init; } = [];
        /// <summary>With --streams: time every backend call and print where a decode step's time goes.</summary>
        public bool Profile { get; init; }

        public const string Usage = """
            usage: ModelBench [options]
              --model NAME         variant to run (default MoeLlavaQwen4e; BenchQwen4eTwoLayers = same widths, 2 layers;
                                   BenchQwenTiny = toy size); --list shows the compiled variants
              --cache DIR          where the random checkpoint is written once and reused (default .artifacts/bench-weights)
              --seed N             seed of the random weights and prompt (default 1)
              --prompt-tokens N    text tokens around the one image (default 32)
              --decode N           greedy decode steps after the first token (default 32)
              --rounds R           split the decode steps into R rounds (default 4: 8 steps each); every round runs
                                   our steps, then as many steps of each PyTorch configuration, then one bandwidth
                                   probe, and the table's decode numbers are medians over the rounds
              --threads N          CPU threads for ModelBench and PyTorch (default: all cores)
              --out FILE           also write the markdown table here
              --python PATH        interpreter with torch (default /usr/bin/python3)
              --torch-dtype D[,D]  bf16 (weights used as stored) and/or f32 (upcast at load, 2x memory); a list
                                   runs each and compares with the fastest decode (default bf16)
              --no-pytorch         skip the PyTorch comparison
              --peers P[,P]        PeerBench peers in the same rounds: llama-bf16, llama-q8_0, llama-q4_0, llama-q4_k
                                   (llama.cpp on GGUF-DIR/qwen3moe-TYPE.gguf, text rows only), torch-bf16 (libtorch 2.10);
                                   needs --peer-command and, for llama, --gguf-dir (benchmarks/run-peers.sh sets all three)
              --peer-command PATH  benchmarks/PeerBench/peer.sh (after benchmarks/PeerBench/setup.sh)
              --gguf-dir DIR       where the qwen3moe-TYPE.gguf files are
              --json-out FILE      also write the numbers as JSON (what benchmarks/run-peers.sh tabulates)
              --bandwidth-mib N    buffer of the per-round bandwidth probe (default 256, 8x a 32 MiB L3: ~0.2 s a probe)
              --dtype T            our weights: bf16 (default), int8 or q4 (a quantised copy of the random checkpoint,
                                   written once next to it by the same code as 'moe quantize', then mapped); PyTorch
                                   keeps the bf16 file, so pass --no-pytorch unless its timings are wanted as well
              --prepare            only write the random checkpoint (and the quantised copy for --dtype) and exit
              --streams N[,N...]   batched decode instead: N concurrent greedy text streams through one
                                   GenerationScheduler vs one stream alone, each count in turn in every round
                                   (paired rounds: --rounds; aggregate decode tokens/s; tokens must match alone)
              --profile            with --streams: time every backend call and print per stream count where a
                                   decode step's time goes (attention, dense, experts, lm_head, norms, the rest)
            """;

        private static int[] StreamList(string text) =>
            text.Split(',').Select(p => int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0 && n <= 64 ? n
                : throw new ArgumentException($"--streams takes stream counts from 1 to 64 separated by commas, got '{text}'")).Distinct().ToArray();

        private static QuantizationType Parse(string text) => WeightQuantizer.TryParse(text, out var t) ? t : throw new ArgumentException(text);

        /// <summary>The quantisation of our weights, or null for bf16.</summary>
        public QuantizationType? Quantization => WeightType == "bf16" ? null : Parse(WeightType);

        public static BenchOptions Parse(string[] args)
        {
            var o = new BenchOptions();
            for (int i = 0; i < args.Length; i++)
            {
                string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
                int Positive(string name)
                {
                    string v = Value();
                    return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0 ? n
                        : throw new ArgumentException($"{name} must be a positive integer, got '{v}'");
                }
                o = args[i] switch
                {
                    "--model" => o with { Model = Value() },
                    "--cache" => o with { CacheDirectory = Value() },
                    "--seed" => o with { Seed = ulong.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong s) ? s : throw new ArgumentException("--seed must be a non-negative integer") },
                    "--prompt-tokens" => o with { PromptTokens = Positive("--prompt-tokens") },
                    "--decode" => o with { DecodeSteps = Positive("--decode") },
                    "--rounds" => o with { Rounds = Positive("--rounds") },
                    "--threads" => o with { Threads = Positive("--threads") },
                    "--out" => o with { Out = Value() },
                    "--python" => o with { Python = Value() },
                    "--torch-dtype" => o with { TorchDTypes = Value().Split(',').Select(d => d is "bf16" or "f32" ? d : throw new ArgumentException($"--torch-dtype takes bf16 and/or f32, got '{d}'")).Distinct().ToArray() },
                    "--no-pytorch" => o with { RunPyTorch = false },
                    "--peers" => o with { Peers = Value().Split(',', StringSplitOptions.RemoveEmptyEntries).Select(p => KnownPeers.Contains(p) ? p : throw new ArgumentException($"--peers takes {string.Join(", ", KnownPeers)}; got '{p}'")).Distinct().ToArray() },
                    "--peer-command" => o with { PeerCommand = Value() },
                    "--gguf-dir" => o with { GgufDirectory = Value() },
                    "--json-out" => o with { JsonOut = Value() },
                    "--bandwidth-mib" => o with { BandwidthMiB = Positive("--bandwidth-mib") },
                    "--dtype" => o with { WeightType = Value() is var t && (t == "bf16" || WeightQuantizer.TryParse(t, out _)) ? (t == "bf16" ? t : WeightQuantizer.Name(Parse(t))) : throw new ArgumentException($"--dtype takes bf16, int8 or q4, got '{t}'") },
                    "--list" => o with { List = true },
                    "--prepare" => o with { PrepareOnly = true },
                    "--streams" => o with { StreamCounts = StreamList(Value()) },
                    "--profile" => o with { Profile = true },
                    "-h" or "--help" => o with { ShowHelp = true },
                    _ => throw new ArgumentException($"unknown option '{args[i]}'"),
                };
            }
            if (o.Peers.Count > 0 && o.PeerCommand is null)
                throw new ArgumentException("--peers needs --peer-command (benchmarks/PeerBench/peer.sh)");
            if (o.Peers.Any(p => p.StartsWith("llama-", StringComparison.Ordinal)) && o.GgufDirectory is null)
                throw new ArgumentException("llama peers need --gguf-dir");
            if (o.Rounds > o.DecodeSteps)
                throw new ArgumentException($"--rounds {o.Rounds} is more than the {o.DecodeSteps} decode steps to split");
            return o;
        }
    }

    public static class Bench
    {
        public static int Run(ModelCatalogEntry entry, BenchOptions options)
        {
            var log = Console.Out;
            var description = entry.ModelDescription;
            var budget = new WeightBudget(entry.Manifest, description);
            string command = "ModelBench " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1));
            log.WriteLine($"# {entry.DisplayName}: {budget.TotalParameters / 1e9:F3}B parameters in the manifest, " +
                          $"{budget.DecodeBytesPerToken / 1e9:F3} GB of weights per decode token, {options.Threads} threads");

            long perToken = budget.ActivatedLlmMatmulParameters + budget.EmbeddingParameters + budget.VisionParameters + budget.ProjectorParameters;
            log.WriteLine($"  activated parameters: {perToken:N0} from the manifest by role, {entry.ActivatedParameters:N0} in the catalog" +
                          (perToken == entry.ActivatedParameters ? " (agree)" : " (DIFFER: check the weight accounting)"));

            if (options.PrepareOnly)
            {
                string prepared = BenchCheckpoint.Ensure(entry.Manifest, options.CacheDirectory, options.Seed, log, out _);
                if (options.Quantization is { } type) BenchCheckpoint.EnsureQuantized(entry.Manifest, prepared, type, log, out _);
                return 0;
            }

            // 1. The FMA peak, for the prefill's share of it (best of the probes before and after the runs). The read
            //    bandwidth is probed in every decode round instead (see InterleavedDecode).
            log.WriteLine("measuring the FMA peak ...");
            double fmaPeak = MachineLimits.MeasureFmaPeak(options.Threads, iterations: 40_000_000);
            log.WriteLine($"  f32 FMA peak {fmaPeak / 1e9:F0} GFLOP/s ({MachineLimits.VectorWidth})");

            // 2. The random checkpoint, written once.
            string folder = BenchCheckpoint.Ensure(entry.Manifest, options.CacheDirectory, options.Seed, log, out var writeTime);
            string file = Path.Combine(folder, BenchCheckpoint.FileName);
            // Ours maps the quantised copy when --dtype asks for one; PyTorch always reads the bf16 file.
            string oursFolder = folder;
            TimeSpan? quantizeTime = null;
            if (options.Quantization is { } quantization)
                oursFolder = BenchCheckpoint.EnsureQuantized(entry.Manifest, folder, quantization, log, out quantizeTime);
            var oursFiles = Directory.GetFiles(oursFolder, "*.safetensors");
            long fileBytes = oursFiles.Sum(f => new FileInfo(f).Length);
            var pageCacheRead = TimeSpan.Zero;
            foreach (string f in oursFiles) pageCacheRead += WarmPageCache(f);
            if (oursFolder != folder && options.RunPyTorch) pageCacheRead += WarmPageCache(file);
            log.WriteLine($"  read through the page cache in {pageCacheRead.TotalSeconds:F1} s (timings below start with it warm)");

            // 3. Inputs: one synthetic image, preprocessed like a real one, and a fixed pseudo-random prompt.
            var rng = new Random(unchecked((int)options.Seed));
            var pixels = new byte[description.ImageSize * description.ImageSize * 3];
            rng.NextBytes(pixels);
            int[] prompt = BuildPrompt(options.PromptTokens, description, rng);
            long ttftStart = Stopwatch.GetTimestamp();
            var preprocessing = Preprocessing(description);
            float[] chw = preprocessing.Apply(new RgbImage(description.ImageSize, description.ImageSize, pixels));
            var preprocessTime = Stopwatch.GetElapsedTime(ttftStart);

            Report report;
            var sessions = new List<PeerSession>();
            try
            {
                // 4. The independent PyTorch implementation on the same weights and inputs: each configuration
                //    loads, encodes the image and prefills alone, one after the other, then waits for its decode
                //    rounds (idle, blocked on its stdin).
                if (options.RunPyTorch)
                {
                    foreach (string dtype in options.TorchDTypes)
                    {
                        log.WriteLine($"starting pytorch_decode.py ({dtype}): load, vision, prefill ...");
                        var session = PeerSession.StartPyTorch(options, dtype, entry, file, prompt, chw, preprocessTime);
                        sessions.Add(session);
                        var first = session.FirstToken;
                        log.WriteLine($"  TTFT {first.Ttft.TotalSeconds:F2} s (vision {first.Vision.TotalSeconds:F2} s, prefill {first.Prefill.TotalSeconds:F2} s), waiting ({session.Info})");
                    }
                }
                // 4b. The PeerBench peers (llama.cpp, libtorch), the same way: each prefills as many rows as we will
                //     (our text tokens + the image's rows), alone, then waits for its rounds.
                foreach (string peer in options.Peers)
                {
                    int promptRows = options.PromptTokens + description.ImageTokens;
                    log.WriteLine($"starting peer {peer}: load, prefill of {promptRows} rows ...");
                    var session = PeerSession.StartPeerBench(options, peer, promptRows, options.PromptTokens, TimeSpan.Zero);
                    sessions.Add(session);
                    var first = session.FirstToken;
                    log.WriteLine($"  TTFT {first.Ttft.TotalSeconds:F2} s (vision {first.Vision.TotalSeconds:F2} s, prefill {first.Prefill.TotalSeconds:F2} s of {session.PromptRows} rows), waiting ({session.Info})");
                }

                // 5. Our run: map + bind, then prefill and greedy decode in rounds interleaved with PyTorch's and
                //    the bandwidth probes. The high-water mark restarts here, so it covers our load on.
                bool peakReset = ResidentMemory.ResetPeak();
                using var backend = new CpuBackend(options.Threads);
                long loadStart = Stopwatch.GetTimestamp();
                var model = entry.Load(oursFolder, backend, new BindOptions());
                var loadTime = Stopwatch.GetElapsedTime(loadStart);
                var packing = backend.Packing;
                log.WriteLine($"  mapped and bound in {loadTime.TotalMilliseconds:F0} ms" + (packing.Weights > 0
                    ? $" ({packing.Weights} bf16 weights packed: {packing.SourceBytes / 1e9:F2} GB → {packing.PackedBytes / 1e9:F2} GB, {packing.Exceptions:N0} exceptions)" : ""));
                int[] roundSteps = DecodeRounds.Split(options.DecodeSteps, options.Rounds);
                var interleaved = new InterleavedDecode(roundSteps, sessions, options, log);
                GenerationResult result;
                var recorder = new RoutingRecorder();
                try
                {
                    var image = Tensor.FromFloats(chw, 3, description.ImageSize, description.ImageSize);
                    var generator = new TextGenerator(model, backend);
                    log.WriteLine($"generating: {options.PromptTokens} text tokens + {description.ImageTokens} image rows, then {options.DecodeSteps} decode steps " +
                                  $"in {roundSteps.Length} rounds ({string.Join('+', roundSteps)}), each followed by a bandwidth probe and every peer's steps ...");
                    result = generator.Generate(new GenerationRequest
                    {
                        PromptIds = prompt,
                        Images = [image],
                        Options = new GenerationOptions { MaxNewTokens = options.DecodeSteps + 1, StopOnEos = false },
                        ConfigureContext = c => c.Routing = recorder,
                    }, interleaved.OnToken);
                }
                finally
                {
                    (model as IDisposable)?.Dispose();
                }
                var t = result.Timings;
                if (interleaved.Rounds.Count != roundSteps.Length || t.DecodeSteps != options.DecodeSteps)
                    throw new BenchException($"generation stopped after {t.DecodeSteps} of {options.DecodeSteps} decode steps ({result.StopReason})");
                long peakKiB = Math.Max(interleaved.PeakKiB, ResidentMemory.PeakKiB());
                var distinctIds = new HashSet<int>(prompt.Where(id => id >= 0).Concat(result.TokenIds)).Count;
                long touched = budget.TouchedBytes(recorder.Records, distinctIds);
                int usedExperts = WeightBudget.UsedExperts(recorder.Records);
                var oursDecode = TimeSpan.FromSeconds(interleaved.Rounds.Sum(r => r.OursSeconds));
                var ours = new RunNumbers(
                    Ttft: preprocessTime + t.TimeToFirstToken, Vision: t.ImageEncoding, Prefill: t.Prefill,
                    Decode: oursDecode, DecodeSteps: t.DecodeSteps, Tokens: result.TokenIds, PeakKiB: peakKiB, Load: loadTime);
                log.WriteLine($"  tokens: {string.Join(' ', result.TokenIds)}");
                log.WriteLine($"  TTFT {ours.Ttft.TotalSeconds:F2} s (vision {t.ImageEncoding.TotalSeconds:F2} s, prefill {t.Prefill.TotalSeconds:F2} s), " +
                              $"decode {ours.DecodeTokensPerSecond:F2} tokens/s, peak RSS {peakKiB / 1048576.0:F2} GiB");
                // TextGenerator's decode time includes the pauses; what is left after them must be our round times.
                log.WriteLine($"  decode wall time {t.Decode.TotalSeconds:F2} s = our rounds {oursDecode.TotalSeconds:F2} s + pauses {interleaved.Paused.TotalSeconds:F2} s " +
                              $"+ {(t.Decode - oursDecode - interleaved.Paused).TotalMilliseconds:F1} ms outside the rounds");

                var torchRuns = new List<PeerRun>();
                foreach (var session in sessions)
                {
                    var torch = session.Finish();
                    log.WriteLine($"{session.Label}: tokens: {string.Join(' ', torch.Tokens)}");
                    log.WriteLine($"  decode {torch.DecodeTokensPerSecond:F2} tokens/s, peak RSS {torch.PeakKiB / 1048576.0:F2} GiB");
                    torchRuns.Add(new PeerRun(torch, session.Info, session.Label, session.SameWeights, session.PromptRows));
                }

                // 6. The table.
                double fmaAfter = MachineLimits.MeasureFmaPeak(options.Threads, iterations: 40_000_000);
                log.WriteLine($"  after the runs: f32 FMA peak {fmaAfter / 1e9:F0} GFLOP/s");
                fmaPeak = Math.Max(fmaPeak, fmaAfter);
                int visionPositions = description.ImageTokens + 1; // CLIP's CLS row / SigLIP's dropped first patch
                report = new Report
                {
                    Entry = entry, Options = options, Budget = budget, Rounds = interleaved.Rounds, FmaPeak = fmaPeak,
                    FileBytes = fileBytes, WriteTime = writeTime, PageCacheRead = pageCacheRead, Ours = ours, Torch = torchRuns,
                    SequenceLength = result.SequenceLength, ImageTokens = t.ImageTokens, VisionPositions = visionPositions,
                    TouchedBytes = touched, UsedExperts = usedExperts, Command = command, Backend = backend.Name,
                    PeakWasReset = peakReset, Packing = backend.Packing, Quantization = options.Quantization, QuantizeTime = quantizeTime,
                };
            }
            finally
            {
                foreach (var session in sessions) session.Dispose();
            }
            string table = report.Markdown();
            log.WriteLine();
            log.WriteLine(table);
            if (options.Out is not null)
            {
                string? dir = Path.GetDirectoryName(Path.GetFullPath(options.Out));
                if (dir is not null) Directory.CreateDirectory(dir);
                File.WriteAllText(options.Out, table);
                log.WriteLine($"table written to {options.Out}");
            }
            if (options.JsonOut is not null)
            {
                string? dir = Path.GetDirectoryName(Path.GetFullPath(options.JsonOut));
                if (dir is not null) Directory.CreateDirectory(dir);
                File.WriteAllText(options.JsonOut, report.Json());
                log.WriteLine($"numbers written to {options.JsonOut}");
            }
            return 0;
        }

        private static VisionPreprocessing Preprocessing(ModelDescription d) =>
            d.VisionTower == "siglip" ? VisionPreprocessing.Siglip(d.ImageSize) : VisionPreprocessing.Clip(d.ImageSize);

        /// <summary>Pseudo-random text ids (never special: below the tokenizer's regular range, no EOS) with the
        /// image placeholder after the first quarter, where a chat template puts it.</summary>
        private static int[] BuildPrompt(int textTokens, ModelDescription d, Random rng)
        {
            int limit = Math.Min(d.TokenizerSize, d.VocabSize);
            var ids = new List<int>(textTokens + 1);
            while (ids.Count < textTokens)
            {
                int id = rng.Next(limit);
                if (!d.EosIds.Contains(id)) ids.Add(id);
            }
            ids.Insert(textTokens / 4, PromptSplicer.ImageTokenId);
            return ids.ToArray();
        }

        /// <summary>Reads the file once so both implementations start from the page cache, not the disk.</summary>
        private static TimeSpan WarmPageCache(string path)
        {
            long start = Stopwatch.GetTimestamp();
            var buffer = new byte[1 << 22];
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            while (stream.Read(buffer) > 0) { }
            return Stopwatch.GetElapsedTime(start);
        }
    }

    /// <summary>A peer's numbers and how to label them.</summary>
    public sealed record PeerRun(RunNumbers Numbers, string Info, string Label, bool SameWeights, int PromptRows);

    public sealed record RunNumbers(TimeSpan Ttft, TimeSpan Vision, TimeSpan Prefill, TimeSpan Decode, int DecodeSteps,
        int[] Tokens, long PeakKiB, TimeSpan Load)
    {
        public double DecodeTokensPerSecond => DecodeSteps == 0 || Decode <= TimeSpan.Zero ? 0 : DecodeSteps / Decode.TotalSeconds;
    }
}
