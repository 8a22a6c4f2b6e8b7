using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelBench;

/// <summary>
/// The two ceilings the model is judged against, measured on this machine in the same run: streaming read
/// bandwidth from DRAM (decode is bound by it) and the f32 FMA throughput of all cores (prefill is bound by it).
/// Both use every core, like the backend does, and report the best of a few repetitions (the machine is shared).
/// </summary>
public static unsafe class MachineLimits
{
    /// <summary>Bytes per second of a parallel sum over a buffer far larger than the last-level cache.</summary>
    public static double ReadBandwidth(int threads, long bufferBytes = 1L << 30, int repetitions = 5)
    {
        long floats = bufferBytes / sizeof(float);
        floats -= floats % (threads * 64L);
        float* buffer = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        try
        {
            // Touch every page from the threads that will read it, so nothing is faulted in during the timing.
            RunOnThreads(threads, t =>
            {
                long n = floats / threads;
                new Span<float>(buffer + t * n, checked((int)Math.Min(n, int.MaxValue))).Fill(1f);
                for (long done = int.MaxValue; done < n; done += int.MaxValue)
                    new Span<float>(buffer + t * n + done, (int)Math.Min(n - done, int.MaxValue)).Fill(1f);
            });
            double best = 0;
            var sums = new float[threads];
            for (int r = 0; r < repetitions; r++)
            {
                long start = Stopwatch.GetTimestamp();
                RunOnThreads(threads, t => sums[t] = Sum(buffer + t * (floats / threads), floats / threads));
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                if (Math.Abs(sums.Sum() - (double)floats) > floats * 1e-3) throw new InvalidOperationException("bandwidth probe summed wrongly");
                best = Math.Max(best, floats * sizeof(float) / seconds);
            }
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    /// <summary>f32 FLOP/s (an FMA counts 2) of independent register-only FMA chains on every core.</summary>
    public static double FmaPeak(int threads, long iterations = 40_000_000, int repetitions = 3)
    {
        double best = 0;
        var sinks = new float[threads];
        int lanes = Vector512.IsHardwareAccelerated ? Vector512<float>.Count : Vector256<float>.Count;
        for (int r = 0; r < repetitions; r++)
        {
            long start = Stopwatch.GetTimestamp();
            RunOnThreads(threads, t => sinks[t] = Vector512.IsHardwareAccelerated ? Fma512(iterations) : Fma256(iterations));
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            best = Math.Max(best, threads * iterations * FmaChains * lanes * 2.0 / seconds);
        }
        GC.KeepAlive(sinks);
        return best;
    }

    public static string VectorWidth => Vector512.IsHardwareAccelerated ? "AVX-512" : Vector256.IsHardwareAccelerated ? "AVX2" : "scalar";

    /// <summary>Enough independent accumulators to cover FMA latency × FMA ports on current x86 cores.</summary>
    private const int FmaChains = 12;

    private static float Sum(float* p, long n)
    {
        var a0 = Vector512<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
        long i = 0;
        for (; i + 64 <= n; i += 64)
        {
            a0 += Vector512.LoadAligned(p + i);
            a1 += Vector512.LoadAligned(p + i + 16);
            a2 += Vector512.LoadAligned(p + i + 32);
            a3 += Vector512.LoadAligned(p + i + 48);
        }
        float s = Vector512.Sum(a0 + a1 + a2 + a3);
        for (; i < n; i++) s += p[i];
        return s;
    }

    private static float Fma512(long iterations)
    {
        var m = Vector512.Create(0.999999f);
        var c = Vector512.Create(1e-7f);
        var a0 = Vector512.Create(1f); var a1 = a0 + c; var a2 = a1 + c; var a3 = a2 + c; var a4 = a3 + c; var a5 = a4 + c;
        var a6 = a5 + c; var a7 = a6 + c; var a8 = a7 + c; var a9 = a8 + c; var a10 = a9 + c; var a11 = a10 + c;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, m, c); a1 = Vector512.FusedMultiplyAdd(a1, m, c);
            a2 = Vector512.FusedMultiplyAdd(a2, m, c); a3 = Vector512.FusedMultiplyAdd(a3, m, c);
            a4 = Vector512.FusedMultiplyAdd(a4, m, c); a5 = Vector512.FusedMultiplyAdd(a5, m, c);
            a6 = Vector512.FusedMultiplyAdd(a6, m, c); a7 = Vector512.FusedMultiplyAdd(a7, m, c);
            a8 = Vector512.FusedMultiplyAdd(a8, m, c); a9 = Vector512.FusedMultiplyAdd(a9, m, c);
            a10 = Vector512.FusedMultiplyAdd(a10, m, c); a11 = Vector512.FusedMultiplyAdd(a11, m, c);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    private static float Fma256(long iterations)
    {
        var m = Vector256.Create(0.999999f);
        var c = Vector256.Create(1e-7f);
        var a0 = Vector256.Create(1f); var a1 = a0 + c; var a2 = a1 + c; var a3 = a2 + c; var a4 = a3 + c; var a5 = a4 + c;
        var a6 = a5 + c; var a7 = a6 + c; var a8 = a7 + c; var a9 = a8 + c; var a10 = a9 + c; var a11 = a10 + c;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, m, c); a1 = Vector256.FusedMultiplyAdd(a1, m, c);
            a2 = Vector256.FusedMultiplyAdd(a2, m, c); a3 = Vector256.FusedMultiplyAdd(a3, m, c);
            a4 = Vector256.FusedMultiplyAdd(a4, m, c); a5 = Vector256.FusedMultiplyAdd(a5, m, c);
            a6 = Vector256.FusedMultiplyAdd(a6, m, c); a7 = Vector256.FusedMultiplyAdd(a7, m, c);
            a8 = Vector256.FusedMultiplyAdd(a8, m, c); a9 = Vector256.FusedMultiplyAdd(a9, m, c);
            a10 = Vector256.FusedMultiplyAdd(a10, m, c); a11 = Vector256.FusedMultiplyAdd(a11, m, c);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    private static void RunOnThreads(int threads, Action<int> body)
    {
        var workers = new Thread[threads];
        using var start = new ManualResetEventSlim(false);
        for (int t = 0; t < threads; t++)
        {
            int index = t;
            workers[t] = new Thread(() => { start.Wait(); body(index); }) { IsBackground = true };
            workers[t].Start();
        }
        start.Set();
        foreach (var w in workers) w.Join();
    }
}
