namespace MoeCompiler.Benchmarks;

internal sealed record BenchOptions(int Threads, bool Quick, bool Blas)
{
    public static BenchOptions Parse(string[] args)
    {
        int threads = Environment.ProcessorCount;
        bool quick = false, blas = true;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--threads": threads = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture); break;
                case "--quick": quick = true; break;
                case "--no-blas": blas = false; break;
                case "--cpu-time": Timing.UseCpuTime = true; break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
        }
        return new BenchOptions(threads, quick, blas);
    }

    /// <summary>Best-of repetitions: the minimum is the least disturbed by other processes.</summary>
    public int Repetitions => Quick ? 2 : 7;
}
