using System.Diagnostics;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;

namespace ModelBench;

/// <summary>
/// <c>--streams N</c>: aggregate greedy decode throughput of N concurrent streams through one
/// <see cref="GenerationScheduler"/> (decode rows stacked, every weight streamed once per step) against the same
/// streams run one at a time, on the random bf16 checkpoint. Text-only prompts (no image: the tower's cost is not
/// what batching changes). Every stream's tokens must equal its tokens alone, or the run fails.
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
        int streams = options.Streams;
        string folder = BenchCheckpoint.Ensure(entry.Manifest, options.CacheDirectory, options.Seed, log, out _);
        using var backend = new CpuBackend(options.Threads);
        long loadStart = Stopwatch.GetTimestamp();
        var model = entry.Load(folder, backend, new BindOptions());
        log.WriteLine($"# {entry.DisplayName}: {streams} streams, {options.PromptTokens} prompt tokens, {options.DecodeSteps} decode steps each, " +
                      $"{backend.Name}; bound in {Stopwatch.GetElapsedTime(loadStart).TotalSeconds:F1} s");
        try
        {
            var rng = new Random(unchecked((int)options.Seed));
            var requests = Enumerable.Range(0, streams).Select(_ => new GenerationRequest
            {
                PromptIds = TextPrompt(options.PromptTokens, d, rng),
                Options = new GenerationOptions { MaxNewTokens = options.DecodeSteps + 1, StopOnEos = false },
            }).ToArray();
            var schedulerOptions = new SchedulerOptions { MaxConcurrentSequences = streams, PrefillChunkTokens = 0 };

            var alone = new (int[] Tokens, double Rate)[streams];
            using (var single = new GenerationScheduler(model, backend, schedulerOptions with { MaxConcurrentSequences = 1 }))
            {
                for (int i = 0; i < streams; i++)
                {
                    var before = single.DecodeStatistics;
                    var run = Measure(single, [requests[i]]);
                    var after = single.DecodeStatistics;
                    alone[i] = (run.Tokens[0], run.Rate);
                    log.WriteLine($"  alone {i}: {run.Rate:F2} tokens/s; forward {(after.ForwardTime - before.ForwardTime).TotalMilliseconds / (after.Steps - before.Steps):F0} ms per decode step");
                }
            }
            double aloneRate = alone.Average(a => a.Rate);

            using var scheduler = new GenerationScheduler(model, backend, schedulerOptions);
            var together = Measure(scheduler, requests);
            var (steps, rows, forward) = scheduler.DecodeStatistics;
            bool equal = Enumerable.Range(0, streams).All(i => alone[i].Tokens.SequenceEqual(together.Tokens[i]));
            log.WriteLine($"  together: {together.Rate:F2} tokens/s aggregate over {together.Window.TotalSeconds:F1} s " +
                          $"({rows / (double)Math.Max(1, steps):F2} sequences per decode step on average, forward {forward.TotalMilliseconds / Math.Max(1, steps):F0} ms per step)");
            log.WriteLine();
            log.WriteLine("| streams | one stream alone, decode tokens/s | all streams together, aggregate decode tokens/s | speed-up | tokens equal alone |");
            log.WriteLine("|---:|---:|---:|---:|---|");
            log.WriteLine($"| {streams} | {aloneRate:F2} | {together.Rate:F2} | {together.Rate / aloneRate:F2}× | {(equal ? "yes, every stream" : "NO")} |");
            log.WriteLine();
            log.WriteLine($"command: ModelBench {string.Join(' ', Environment.GetCommandLineArgs().Skip(1))}");
            if (!equal) throw new BenchException("a stream's tokens differ between the batched run and its run alone");
            return 0;
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
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
