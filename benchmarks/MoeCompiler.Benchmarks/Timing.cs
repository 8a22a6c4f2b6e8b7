using System.Diagnostics;
using System.Runtime.InteropServices;

namespace MoeCompiler.Benchmarks;

internal static partial class Timing
{
    /// <summary>Measure the process's CPU time instead of wall time: on a machine shared with other work, with one
    /// thread, this approximates the time the kernel would take alone (caches are still shared).</summary>
    public static bool UseCpuTime { get; set; }

    public static double Now()
    {
        if (!UseCpuTime) return Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;
        ClockGetTime(ProcessCpuTimeClock, out var t);
        return t.Seconds + t.Nanoseconds * 1e-9;
    }

    /// <summary>Seconds of the fastest of <paramref name="repetitions"/> runs after one warm-up run.</summary>
    public static double Best(int repetitions, Action action)
    {
        action();
        double best = double.MaxValue;
        for (int i = 0; i < repetitions; i++)
        {
            double start = Now();
            action();
            best = Math.Min(best, Now() - start);
        }
        return best;
    }

    /// <summary>Runs <paramref name="body"/>(thread) on <paramref name="threads"/> dedicated threads at once.</summary>
    public static void OnAllThreads(int threads, Action<int> body)
    {
        using var start = new Barrier(threads);
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int id = t;
            workers[t] = new Thread(() => { start.SignalAndWait(); body(id); }) { IsBackground = true };
            workers[t].Start();
        }
        foreach (var w in workers) w.Join();
    }

    private const int ProcessCpuTimeClock = 2; // CLOCK_PROCESS_CPUTIME_ID

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out TimeSpec time);
}
