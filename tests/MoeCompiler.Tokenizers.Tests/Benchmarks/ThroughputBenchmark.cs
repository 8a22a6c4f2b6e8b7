using System.Diagnostics;
using System.Text;
using MoeCompiler.Tokenizers.Splitting;
using Xunit.Abstractions;

namespace MoeCompiler.Tokenizers.Tests.Benchmarks;

/// <summary>Encoding throughput of the library against <see cref="NaiveBpe"/> in the same process, on one
/// thread. Runs only with MOE_SLOW_TESTS=1; it prints numbers and asserts only that both encoders agree.
///   MOE_SLOW_TESTS=1 dotnet test tests/MoeCompiler.Tokenizers.Tests -c Release --filter ThroughputBenchmark --logger "console;verbosity=detailed"</summary>
public class ThroughputBenchmark(ITestOutputHelper output)
{
    [SlowFact]
    public void EncodeThroughputVersusNaive()
    {
        var sw = Stopwatch.StartNew();
        ITokenizer fast = TokenizerLoader.ForKind("qwen");
        output.WriteLine($"load qwen.tiktoken: {sw.Elapsed.TotalMilliseconds:F0} ms");
        var naive = new NaiveBpe(Path.Combine(TestSupport.DataDirectory, "qwen.tiktoken"), PieceSplitter.QwenPattern);
        output.WriteLine("MB/s by wall clock and by process CPU time (CPU time is the fairer number on a busy machine)");
        Run("English", fast, naive, seed => SampleText.English(4 << 20, seed), SampleText.English(256 << 10, seed: 99));
        Run("Chinese", fast, naive, seed => SampleText.Chinese(2 << 20, seed), SampleText.Chinese(128 << 10, seed: 99));
    }

    private readonly record struct Rate(double Wall, double Cpu);

    private static Rate Time(Func<int> encode, string text)
    {
        double megabytes = Encoding.UTF8.GetByteCount(text) / 1e6;
        using var process = Process.GetCurrentProcess();
        TimeSpan cpu0 = process.TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        encode();
        double wall = sw.Elapsed.TotalSeconds;
        process.Refresh();
        double cpu = (process.TotalProcessorTime - cpu0).TotalSeconds;
        return new Rate(megabytes / wall, megabytes / Math.Max(cpu, 1e-6));
    }

    private void Run(string name, ITokenizer fast, NaiveBpe naive, Func<int, string> makeText, string small)
    {
        // Each timed pass encodes a different text, so the piece cache only helps as much as real text repeats.
        Rate cold = Time(() => fast.Encode(makeText(1)).Length, makeText(1));
        var passes = Enumerable.Range(2, 3).Select(seed =>
        {
            string text = makeText(seed);
            return Time(() => fast.Encode(text).Length, text);
        }).ToList();
        Rate ours = new(passes.Max(p => p.Wall), passes.Max(p => p.Cpu));
        Rate baseline = Time(() => naive.Encode(small).Count, small);
        Assert.Equal(naive.Encode(small), fast.Encode(small));

        output.WriteLine($"{name}:");
        output.WriteLine($"  ours, first pass (JIT, empty cache)  wall {cold.Wall,7:F2}  cpu {cold.Cpu,7:F2}");
        output.WriteLine($"  ours, best of 3 fresh texts          wall {ours.Wall,7:F2}  cpu {ours.Cpu,7:F2}");
        output.WriteLine($"  naive (Regex + string BPE, no cache) wall {baseline.Wall,7:F2}  cpu {baseline.Cpu,7:F2}");
        output.WriteLine($"  ratio ours/naive                     wall {ours.Wall / baseline.Wall,6:F1}x  cpu {ours.Cpu / baseline.Cpu,6:F1}x");
    }
}
