using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Runtime.Diagnostics;

/// <summary>
/// The two ceilings speed is judged against, measured on this machine in the same run as the thing measured:
/// the FMA peak (a register-only fused-multiply-add loop on every thread at once) and the read bandwidth
/// (a streaming sum over a buffer far larger than the caches, on every thread at once).
/// </summary>
public sealed record MachineLimits(double FmaGflops, double ReadGBps, int Threads)
{
    /// <param name="quick">Fewer repetitions and a smaller buffer: for tools, not for published tables.</param>
    /// <param name="cpuTime">Time by the process's CPU time divided by the threads instead of wall time: on a machine
    /// shared with other work this approximates what the threads would do alone (caches are still shared).</param>
    public static MachineLimits Measure(int threads, bool quick = false, bool cpuTime = false)
    {
        threads = Math.Max(1, threads);
        int repetitions = quick ? 2 : 5;
        double flops = MeasureFmaPeak(threads, quick ? 20_000_000 : 50_000_000, repetitions, cpuTime);
        double bytes = MeasureReadBandwidth(threads, quick ? 256L << 20 : 1L << 30, repetitions, cpuTime);
        return new MachineLimits(flops / 1e9, bytes / 1e9, threads);
    }

    /// <summary>f32 FLOP/s (an FMA counts 2) of independent register-only FMA chains on every thread; best of the repetitions.</summary>
    public static double MeasureFmaPeak(int threads, long iterations = 50_000_000, int repetitions = 3, bool cpuTime = false)
    {
        double best = 0;
        for (int i = 0; i < repetitions; i++) best = Math.Max(best, FmaPeak(Math.Max(1, threads), iterations, cpuTime));
        return best;
    }

    /// <summary>Bytes per second of a parallel streaming sum over a buffer far larger than the caches; best of the repetitions.</summary>
    public static double MeasureReadBandwidth(int threads, long bufferBytes = 1L << 30, int repetitions = 3, bool cpuTime = false)
    {
        double best = 0;
        for (int i = 0; i < repetitions; i++) best = Math.Max(best, ReadBandwidth(Math.Max(1, threads), bufferBytes, cpuTime));
        return best;
    }

    public static string VectorWidth => Avx512F.IsSupported ? "AVX-512" : Fma.IsSupported ? "AVX2+FMA" : "no FMA";

    public string Describe() =>
        $"{Environment.ProcessorCount} logical cores, {RuntimeInformation.ProcessArchitecture}, " +
        $"{VectorWidth}; " +
        $"FMA peak {FmaGflops:0.0} GFLOP/s, read bandwidth {ReadGBps:0.0} GB/s ({Threads} threads)";

    private static double FmaPeak(int threads, long iterations, bool cpuTime)
    {
        double seconds = OnAllThreads(threads, cpuTime, _ => Avx512F.IsSupported ? FmaLoop512(iterations) : Fma.IsSupported ? FmaLoop256(iterations) : 0f);
        int lanes = Avx512F.IsSupported ? 16 : Fma.IsSupported ? 8 : 0;
        // 12 independent chains per iteration, 2 FLOPs per lane per FMA.
        return threads * iterations * 12.0 * lanes * 2 / seconds;
    }

    private static float FmaLoop512(long iterations)
    {
        var m = Vector512.Create(0.999999f);
        var a = Vector512.Create(1e-7f);
        Vector512<float> c0 = Vector512.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
        for (long i = 0; i < iterations; i++)
        {
            c0 = Avx512F.FusedMultiplyAdd(c0, m, a); c1 = Avx512F.FusedMultiplyAdd(c1, m, a);
            c2 = Avx512F.FusedMultiplyAdd(c2, m, a); c3 = Avx512F.FusedMultiplyAdd(c3, m, a);
            c4 = Avx512F.FusedMultiplyAdd(c4, m, a); c5 = Avx512F.FusedMultiplyAdd(c5, m, a);
            c6 = Avx512F.FusedMultiplyAdd(c6, m, a); c7 = Avx512F.FusedMultiplyAdd(c7, m, a);
            c8 = Avx512F.FusedMultiplyAdd(c8, m, a); c9 = Avx512F.FusedMultiplyAdd(c9, m, a);
            c10 = Avx512F.FusedMultiplyAdd(c10, m, a); c11 = Avx512F.FusedMultiplyAdd(c11, m, a);
        }
        return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    private static float FmaLoop256(long iterations)
    {
        var m = Vector256.Create(0.999999f);
        var a = Vector256.Create(1e-7f);
        Vector256<float> c0 = Vector256.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
        for (long i = 0; i < iterations; i++)
        {
            c0 = Fma.MultiplyAdd(c0, m, a); c1 = Fma.MultiplyAdd(c1, m, a);
            c2 = Fma.MultiplyAdd(c2, m, a); c3 = Fma.MultiplyAdd(c3, m, a);
            c4 = Fma.MultiplyAdd(c4, m, a); c5 = Fma.MultiplyAdd(c5, m, a);
            c6 = Fma.MultiplyAdd(c6, m, a); c7 = Fma.MultiplyAdd(c7, m, a);
            c8 = Fma.MultiplyAdd(c8, m, a); c9 = Fma.MultiplyAdd(c9, m, a);
            c10 = Fma.MultiplyAdd(c10, m, a); c11 = Fma.MultiplyAdd(c11, m, a);
        }
        return Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    private static unsafe double ReadBandwidth(int threads, long bytes, bool cpuTime)
    {
        byte* data = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        try
        {
            // Touch every page first so the timed passes read memory, not page faults.
            NativeMemory.Fill(data, (nuint)bytes, 1);
            long perThread = bytes / threads / 256 * 256;
            double best = double.MaxValue;
            for (int rep = 0; rep < 3; rep++)
                best = Math.Min(best, OnAllThreads(threads, cpuTime, t => Sum((float*)(data + t * perThread), perThread / 4)));
            return perThread * threads / best;
        }
        finally
        {
            NativeMemory.AlignedFree(data);
        }
    }

    private static unsafe float Sum(float* p, long count)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (long i = 0; i + 64 <= count; i += 64)
            {
                a0 += Vector512.Load(p + i);
                a1 += Vector512.Load(p + i + 16);
                a2 += Vector512.Load(p + i + 32);
                a3 += Vector512.Load(p + i + 48);
            }
            return Vector512.Sum(a0 + a1 + a2 + a3);
        }
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        for (long i = 0; i + 32 <= count; i += 32)
        {
            b0 += Vector256.Load(p + i);
            b1 += Vector256.Load(p + i + 8);
            b2 += Vector256.Load(p + i + 16);
            b3 += Vector256.Load(p + i + 24);
        }
        return Vector256.Sum(b0 + b1 + b2 + b3);
    }

    /// <summary>
    /// Runs <paramref name="work"/> on <paramref name="threads"/> threads started together: wall seconds, or with
    /// <paramref name="cpuTime"/> the process CPU seconds spent meanwhile divided by the threads.
    /// </summary>
    private static double OnAllThreads(int threads, bool cpuTime, Func<int, float> work)
    {
        var sink = new float[threads];
        using var ready = new CountdownEvent(threads);
        using var go = new ManualResetEventSlim(false);
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int index = t;
            workers[t] = new Thread(() =>
            {
                ready.Signal();
                go.Wait();
                sink[index] = work(index);
            }) { IsBackground = true };
            workers[t].Start();
        }
        ready.Wait();
        using var process = Process.GetCurrentProcess();
        TimeSpan cpuStart = process.TotalProcessorTime;
        long start = Stopwatch.GetTimestamp();
        go.Set();
        foreach (var w in workers) w.Join();
        GC.KeepAlive(sink);
        if (!cpuTime) return Stopwatch.GetElapsedTime(start).TotalSeconds;
        process.Refresh();
        return (process.TotalProcessorTime - cpuStart).TotalSeconds / threads;
    }
}
