using System.Diagnostics;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;

namespace ModelBench;

/// <summary>
/// <c>--streams N[,N…]</c>: aggregate greedy decode throughput of N concurrent streams through one
/// <see cref="GenerationScheduler"/> (decode rows stacked, every weight streamed once per step) against one stream
/// alone, on the random bf16 checkpoint. Text-only prompts (no image: the tower's cost is not what batching changes).
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
        using var backend = new CpuBackend(options.Threads);
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
            bool equal = true;
            for (int round = 0; round < options.Rounds; round++)
            {
                var before = single.DecodeStatistics;
                var alone = Measure(single, [requests[round % streams]]);
                var after = single.DecodeStatistics;
                double aloneMs = (after.ForwardTime - before.ForwardTime).TotalMilliseconds / Math.Max(1, after.Steps - before.Steps);
                aloneRates.Add(alone.Rate);
                aloneStepMs.Add(aloneMs);
                var line = new System.Text.StringBuilder($"  round {round + 1}: alone {alone.Rate:F2} tokens/s ({aloneMs:F0} ms per step)");
                foreach (int n in counts)
                {
                    before = scheduler.DecodeStatistics;
                    var together = Measure(scheduler, requests[..n]);
                    after = scheduler.DecodeStatistics;
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
            log.WriteLine($"command: ModelBench {string.Join(' ', Environment.GetCommandLineArgs().Skip(1))}");
            if (!equal) throw new BenchException("a stream's tokens differ between a batched run and its run alone");
            return 0;
        }
        finally
        {
            (model as IDisposable)?.Dispose();
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
