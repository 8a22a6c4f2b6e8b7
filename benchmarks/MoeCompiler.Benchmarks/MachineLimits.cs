using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Benchmarks;

/// <summary>The two ceilings the kernels are judged against, measured on this machine in this run.</summary>
internal sealed record MachineLimits(double FmaGflops, double ReadGBps, int Threads)
{
    public static MachineLimits Measure(BenchOptions options)
    {
        double gflops = 0, gbps = 0;
        for (int i = 0; i < (options.Quick ? 2 : 5); i++)
        {
            gflops = Math.Max(gflops, FmaPeak(options.Threads));
            gbps = Math.Max(gbps, ReadBandwidth(options.Threads));
        }
        return new MachineLimits(gflops, gbps, options.Threads);
    }

    public void Print()
    {
        Console.WriteLine($"machine: {Environment.ProcessorCount} logical cores, {RuntimeInformation.ProcessArchitecture}, "
            + $"{(Avx512F.IsSupported ? "AVX-512" : Avx2.IsSupported ? "AVX2" : "no AVX")}, .NET {Environment.Version}");
        Console.WriteLine($"FMA peak ({Threads} threads, register-only FMA loop): {FmaGflops,8:F1} GFLOP/s");
        Console.WriteLine($"read bandwidth ({Threads} threads, streaming sum of 1 GiB): {ReadGBps,8:F1} GB/s");
    }

    /// <summary>Independent FMA chains, enough to cover latency × pipes, on every thread at once.</summary>
    private static double FmaPeak(int threads)
    {
        const long iterations = 50_000_000;
        double start = Timing.Now();
        var sink = new float[threads];
        Timing.OnAllThreads(threads, t => sink[t] = Avx512F.IsSupported ? FmaLoop512(iterations) : FmaLoop256(iterations));
        double seconds = (Timing.Now() - start) / (Timing.UseCpuTime ? threads : 1);
        int lanes = Avx512F.IsSupported ? 16 : 8;
        return threads * iterations * 12.0 * lanes * 2 / seconds / 1e9;
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

    private static unsafe double ReadBandwidth(int threads)
    {
        const long bytes = 1L << 30;
        float* data = (float*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        try
        {
            long count = bytes / 4;
            new Span<byte>(data, (int)bytes).Fill(1);
            long per = count / threads;
            var sink = new float[threads];
            double best = double.MaxValue;
            for (int rep = 0; rep < 3; rep++)
            {
                double start = Timing.Now();
                Timing.OnAllThreads(threads, t => sink[t] = Sum(data + t * per, per));
                best = Math.Min(best, (Timing.Now() - start) / (Timing.UseCpuTime ? threads : 1));
            }
            return bytes / best / 1e9;
        }
        finally
        {
            NativeMemory.AlignedFree(data);
        }
    }

    private static unsafe float Sum(float* p, long count)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        long i = 0;
        for (; i + 64 <= count; i += 64)
        {
            a0 += Vector512.Load(p + i);
            a1 += Vector512.Load(p + i + 16);
            a2 += Vector512.Load(p + i + 32);
            a3 += Vector512.Load(p + i + 48);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3);
    }
}
