using System.Diagnostics;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;

namespace ModelBench;

/// <summary>
/// <c>--streams N[,N…]</c>: aggregate greedy decode throughput of N concurrent streams through one
/// <see cref="GenerationScheduler"/> (decode rows stacked, every weight streamed once per step) against one stream
/// alone, on the random bf16 checkpoint (or its
/// quantised copy with <c>--dtype</c>). Text-only prompts (no image: the tower's cost is not what batching changes).
/// Paired rounds: every round runs one stream alone, then each stream count in turn, so each ratio compares runs
/// seconds apart on a machine whose load changes. Every stream's tokens must equal its tokens alone, or the run fails.
/// <para>Decode rate = tokens released in the window where every stream of the run is decoding (from the last
/// stream's first token to the first stream's last token) divided by the window's length; alone, the window is the
/// stream's own first to last token.</para>
/// </summary>
public static class BatchedDecodeBench
{
    public static int Run(ModelCatalogEntry entry, BenchOptions options)
    {
        var log = Console.Out;
        var d = entry.ModelDescription;
        int[] counts = options.StreamCounts.Order().ToArray();
        int streams = counts[^1];
        string folder = BenchCheckpoint.Ensure(entry.Manifest, options.CacheDirectory, options.Seed, log, out _);
        // --dtype int8|q4: the quantised copy, as the single-stream run maps it.
        if (options.Quantization is { } quantization)
            folder = BenchCheckpoint.EnsureQuantized(entry.Manifest, folder, quantization, log, out _);
        using var cpu = new CpuBackend(options.Threads);
        var profiler = options.Profile ? new ProfilingBackend(cpu, d.Experts, d.VocabSize, threadCpuTime: options.Threads == 1) : null;
        IBackend backend = profiler ?? (IBackend)cpu;
        long loadStart = Stopwatch.GetTimestamp();
        var model = entry.Load(folder, backend, new BindOptions());
        log.WriteLine($"# {entry.DisplayName}: streams {string.Join(", ", counts)}, {options.PromptTokens} prompt tokens, {options.DecodeSteps} decode steps each, " +
                      $"{options.Rounds} paired rounds, {backend.Name}; bound in {Stopwatch.GetElapsedTime(loadStart).TotalSeconds:F1} s");
        try
        {
            var rng = new Random(unchecked((int)options.Seed));
            var requests = Enumerable.Range(0, streams).Select(_ => new GenerationRequest
            {
                PromptIds = TextPrompt(options.PromptTokens, d, rng),
                Options = new GenerationOptions { MaxNewTokens = options.DecodeSteps + 1, StopOnEos = false },
            }).ToArray();
            var schedulerOptions = new SchedulerOptions { MaxConcurrentSequences = streams, PrefillChunkTokens = 0 };

            // Every stream alone once: the tokens that each batched run must reproduce.
            var aloneTokens = new int[streams][];
            using var single = new GenerationScheduler(model, backend, schedulerOptions with { MaxConcurrentSequences = 1 });
            for (int i = 0; i < streams; i++) aloneTokens[i] = Measure(single, [requests[i]]).Tokens[0];

            using var scheduler = new GenerationScheduler(model, backend, schedulerOptions);
            var rates = counts.ToDictionary(n => n, _ => new List<double>());
            var ratios = counts.ToDictionary(n => n, _ => new List<double>());
            var stepMs = counts.ToDictionary(n => n, _ => new List<double>());
            var aloneRates = new List<double>();
            var aloneStepMs = new List<double>();
            // Per stream count (1 = alone): profile totals, decode steps and bytes allocated, summed over the rounds.
            var profiles = new Dictionary<int, Dictionary<string, (long Calls, long Ticks)>>();
            var profileSteps = new Dictionary<int, long>();
            var allocated = new Dictionary<int, (long Bytes, long Steps, long ForwardTicks)>();
            void Account(int n, (long Steps, long Rows, TimeSpan ForwardTime) b, (long Steps, long Rows, TimeSpan ForwardTime) a, long bytes)
            {
                long steps = a.Steps - b.Steps;
                allocated.TryGetValue(n, out var t);
                allocated[n] = (t.Bytes + bytes, t.Steps + steps, t.ForwardTicks + (a.ForwardTime - b.ForwardTime).Ticks);
                if (profiler is null) return;
                var totals = profiles.TryGetValue(n, out var p) ? p : profiles[n] = new();
                foreach (var (key, value) in profiler.Snapshot())
                {
                    totals.TryGetValue(key, out var v);
                    totals[key] = (v.Calls + value.Calls, v.Ticks + value.Ticks);
                }
                profileSteps[n] = profileSteps.GetValueOrDefault(n) + steps;
                profiler.Reset();
            }
            bool equal = true;
            for (int round = 0; round < options.Rounds; round++)
            {
                profiler?.Reset();
                var before = single.DecodeStatistics;
                long bytes = GC.GetTotalAllocatedBytes(true);
                var alone = Measure(single, [requests[round % streams]]);
                var after = single.DecodeStatistics;
                Account(1, before, after, GC.GetTotalAllocatedBytes(true) - bytes);
                double aloneMs = (after.ForwardTime - before.ForwardTime).TotalMilliseconds / Math.Max(1, after.Steps - before.Steps);
                aloneRates.Add(alone.Rate);
                aloneStepMs.Add(aloneMs);
                var line = new System.Text.StringBuilder($"  round {round + 1}: alone {alone.Rate:F2} tokens/s ({aloneMs:F0} ms per step)");
                foreach (int n in counts)
                {
                    profiler?.Reset();
                    before = scheduler.DecodeStatistics;
                    bytes = GC.GetTotalAllocatedBytes(true);
                    var together = Measure(scheduler, requests[..n]);
                    after = scheduler.DecodeStatistics;
                    Account(n, before, after, GC.GetTotalAllocatedBytes(true) - bytes);
                    double ms = (after.ForwardTime - before.ForwardTime).TotalMilliseconds / Math.Max(1, after.Steps - before.Steps);
                    equal &= Enumerable.Range(0, n).All(i => aloneTokens[i].SequenceEqual(together.Tokens[i]));
                    rates[n].Add(together.Rate);
                    ratios[n].Add(together.Rate / alone.Rate);
                    stepMs[n].Add(ms);
                    line.Append($"; {n} streams {together.Rate:F2} tokens/s ({ms:F0} ms per step, {together.Rate / alone.Rate:F2}×)");
                }
                log.WriteLine(line);
            }
            log.WriteLine();
            log.WriteLine("| streams | aggregate decode tokens/s (median of rounds) | forward ms per decode step | ÷ one stream alone, same round (median) | tokens equal alone |");
            log.WriteLine("|---:|---:|---:|---:|---|");
            log.WriteLine($"| 1 (alone) | {Median(aloneRates):F2} | {Median(aloneStepMs):F0} | 1.00× | |");
            foreach (int n in counts)
                log.WriteLine($"| {n} | {Median(rates[n]):F2} | {Median(stepMs[n]):F0} | {Median(ratios[n]):F2}× (rounds: {string.Join(", ", ratios[n].Select(r => r.ToString("F2")))}) | {(equal ? "yes, every stream" : "NO")} |");
            log.WriteLine();
            foreach (var (n, a) in allocated.OrderBy(p => p.Key))
                log.WriteLine($"  {(n == 1 ? "alone" : $"{n} streams")}: {a.Bytes / 1024.0 / Math.Max(1, a.Steps):F0} KiB allocated per decode step (whole run incl. prefill, all threads)");
            if (profiler is not null) PrintProfile(log, profiles, profileSteps, allocated, profiler.Frequency, options.Threads == 1);
            log.WriteLine();
            log.WriteLine($"command: ModelBench {string.Join(' ', Environment.GetCommandLineArgs().Skip(1))}");
            if (!equal) throw new BenchException("a stream's tokens differ between a batched run and its run alone");
            return 0;
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    /// <summary>Per stream count: ms per decode step by category (decode calls, then prefill calls of the same run
    /// divided by the same steps), the forward time the decode categories do not cover (module glue, routing on the
    /// host, pool hand-offs; wall-clock profiles only), and per category the ratio to the one-stream profile.</summary>
    private static void PrintProfile(TextWriter log, Dictionary<int, Dictionary<string, (long Calls, long Ticks)>> profiles,
        Dictionary<int, long> steps, Dictionary<int, (long Bytes, long Steps, long ForwardTicks)> allocated, long frequency, bool cpuTime)
    {
        double Ms(long ticks) => ticks * 1000.0 / frequency;
        profiles.TryGetValue(1, out var alone);
        foreach (var (n, totals) in profiles.OrderBy(p => p.Key))
        {
            long s = Math.Max(1, steps[n]);
            double forwardMs = TimeSpan.FromTicks(allocated[n].ForwardTicks).TotalMilliseconds / s;
            var decode = totals.Where(p => !p.Key.StartsWith("prefill: ", StringComparison.Ordinal)).ToList();
            double covered = decode.Sum(p => Ms(p.Value.Ticks)) / s;
            log.WriteLine();
            log.WriteLine($"profile, {(n == 1 ? "one stream alone" : $"{n} streams")}: {s} decode steps, forward {forwardMs:F1} ms per step (wall), " +
                          $"decode backend calls {covered:F1} ms per step ({(cpuTime ? "CPU time of the stepping thread" : "wall")})");
            log.WriteLine("| category (decode) | calls per step | ms per step | share | × one stream's ms |");
            log.WriteLine("|---|---:|---:|---:|---:|");
            // Linear categories name their row count; merge counts so that the comparison with one stream lines up.
            static string Merge(string key) => System.Text.RegularExpressions.Regex.Replace(key, @", \d+ rows$", "");
            var merged = decode.GroupBy(p => Merge(p.Key)).Select(g => (Key: g.Key, Calls: g.Sum(p => p.Value.Calls), Ticks: g.Sum(p => p.Value.Ticks)))
                .OrderByDescending(p => p.Ticks).ToList();
            var aloneMerged = alone is null ? new Dictionary<string, long>()
                : alone.Where(p => !p.Key.StartsWith("prefill: ", StringComparison.Ordinal)).GroupBy(p => Merge(p.Key)).ToDictionary(g => g.Key, g => g.Sum(p => p.Value.Ticks));
            long aloneSteps = Math.Max(1, steps.GetValueOrDefault(1));
            double otherMs = 0;
            foreach (var (key, calls, ticks) in merged)
            {
                double ms = Ms(ticks) / s;
                if (ms / covered < 0.005) { otherMs += ms; continue; }
                string ratio = aloneMerged.TryGetValue(key, out long a) && a > 0 ? $"{ms / (Ms(a) / aloneSteps):F2}×" : "";
                log.WriteLine($"| {key} | {(double)calls / s:F1} | {ms:F2} | {ms / covered:P1} | {ratio} |");
            }
            log.WriteLine($"| (categories under 0.5% each) | | {otherMs:F2} | {otherMs / covered:P1} | |");
            if (!cpuTime) log.WriteLine($"| (forward outside backend calls) | | {forwardMs - covered:F2} | | |");
            double prefillMs = totals.Where(p => p.Key.StartsWith("prefill: ", StringComparison.Ordinal)).Sum(p => Ms(p.Value.Ticks)) / s;
            log.WriteLine($"  (prefill calls of the run, not above: {prefillMs:F1} ms per decode step)");
            // The prefill calls themselves, totals over the run (every prompt of the run prefilled once).
            var prefill = totals.Where(p => p.Key.StartsWith("prefill: ", StringComparison.Ordinal))
                .Select(p => (p.Key, p.Value.Calls, Ms: Ms(p.Value.Ticks))).OrderByDescending(p => p.Ms).ToList();
            double prefillTotal = prefill.Sum(p => p.Ms);
            if (prefillTotal <= 0) continue;
            log.WriteLine($"| category (prefill, totals over the run) | calls | ms | share |");
            log.WriteLine("|---|---:|---:|---:|");
            foreach (var (key, calls, ms) in prefill)
                if (ms / prefillTotal >= 0.002) log.WriteLine($"| {key} | {calls} | {ms:F1} | {ms / prefillTotal:P1} |");
        }
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private sealed record Measured(int[][] Tokens, double Rate, TimeSpan Window);

    private static Measured Measure(GenerationScheduler scheduler, GenerationRequest[] requests)
    {
        var stamps = requests.Select(_ => new List<long>()).ToArray();
        var tasks = requests.Select((r, i) => scheduler.GenerateAsync(r, t => { if (t.Id >= 0) stamps[i].Add(Stopwatch.GetTimestamp()); })).ToArray();
        Task.WaitAll(tasks);
        long start = stamps.Max(s => s[0]), end = stamps.Min(s => s[^1]);
        int tokens = stamps.Sum(s => s.Count(t => t > start && t <= end));
        var window = Stopwatch.GetElapsedTime(start, end);
        return new Measured(tasks.Select(t => t.Result.TokenIds).ToArray(), tokens / window.TotalSeconds, window);
    }

    private static int[] TextPrompt(int length, MoeCompiler.Runtime.Modules.ModelDescription d, Random rng)
    {
        int limit = Math.Min(d.TokenizerSize, d.VocabSize);
        var ids = new List<int>(length);
        while (ids.Count < length)
        {
            int id = rng.Next(limit);
            if (!d.EosIds.Contains(id)) ids.Add(id);
        }
        return ids.ToArray();
    }
}
