using System.Globalization;
using System.Text;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Diagnostics;

namespace ModelBench;

/// <summary>The markdown written to the console and to --out: the setup, then one row per quantity.</summary>
public sealed class Report
{
    public required ModelCatalogEntry Entry { get; init; }
    public required BenchOptions Options { get; init; }
    public required WeightBudget Budget { get; init; }
    public required double Bandwidth { get; init; }
    public required double FmaPeak { get; init; }
    public required long FileBytes { get; init; }
    public required TimeSpan? WriteTime { get; init; }
    public required TimeSpan PageCacheRead { get; init; }
    public required RunNumbers Ours { get; init; }
    public required IReadOnlyList<(RunNumbers Numbers, string Info)> Torch { get; init; }
    public required int SequenceLength { get; init; }
    public required int ImageTokens { get; init; }
    public required int VisionPositions { get; init; }
    public required long TouchedBytes { get; init; }
    public required int UsedExperts { get; init; }
    public required string Command { get; init; }
    public required string Backend { get; init; }
    public required bool PeakWasReset { get; init; }

    public string Markdown()
    {
        var b = new StringBuilder();
        var d = Entry.ModelDescription;
        double idealTokensPerSecond = Bandwidth / Budget.DecodeBytesPerToken;
        double prefillFlops = Budget.PrefillFlops(SequenceLength);
        double visionFlops = Budget.VisionFlops(VisionPositions, ImageTokens);
        double touchedGiB = TouchedBytes / (double)(1L << 30);
        string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

        b.AppendLine(F($"Run {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC on {CpuName()} ({Environment.ProcessorCount} cores visible, {Options.Threads} threads used), {MemoryTotal()} RAM; `{Command}`"));
        b.AppendLine();
        b.AppendLine(F($"- Variant `{Entry.Name}`: {Budget.TotalParameters / 1e9:F3}B parameters ({d.Layers} LLM layers, {d.MoeLayers.Length} MoE of {d.Experts} experts top-{d.TopK}), random bf16 weights in one {FileBytes / 1e9:F2} GB safetensors file") +
                     (WriteTime is { } w ? F($" written in {w.TotalSeconds:F0} s") : " (reused)") +
                     F($", mapped and bound in {Ours.Load.TotalMilliseconds:F0} ms; page cache warmed first ({PageCacheRead.TotalSeconds:F1} s to read the file)"));
        b.AppendLine(F($"- Input: one {d.ImageSize}-pixel image ({ImageTokens} feature rows) + {Options.PromptTokens} text tokens = {SequenceLength} prefill rows; then {Options.DecodeSteps} greedy decode steps"));
        b.AppendLine(F($"- Machine limits measured in this run (best of the probes before and after the runs): read bandwidth {Bandwidth / 1e9:F1} GB/s (parallel sum over {Options.BandwidthMiB} MiB), f32 FMA peak {FmaPeak / 1e9:F0} GFLOP/s ({MachineLimits.VectorWidth} register-only FMA chains)"));
        b.AppendLine(F($"- Decode streams {Budget.DecodeBytesPerToken / 1e9:F3} GB of weights per token (shared LLM weights + top-{d.TopK} experts + lm_head + one embedding row) → bandwidth limit {idealTokensPerSecond:F2} tokens/s (KV cache reads not counted)"));
        b.AppendLine(F($"- Prefill useful work {prefillFlops / 1e12:F2} TFLOP (2 · activated LLM params · rows, lm_head on the last row); vision tower + projector ≈ {visionFlops / 1e12:F2} TFLOP"));
        b.AppendLine();
        b.Append("| quantity | ModelBench (" + Backend + ") |");
        foreach (var (_, info) in Torch) b.Append(" PyTorch (" + info + ") |");
        b.AppendLine();
        b.AppendLine("|---|---|" + string.Concat(Enumerable.Repeat("---|", Torch.Count)));
        string All(Func<RunNumbers, string> f) => "| " + f(Ours) + " |" + string.Concat(Torch.Select(t => " " + f(t.Numbers) + " |"));
        b.AppendLine("| load (map + bind) " + All(r => F($"{r.Load.TotalSeconds:F2} s")));
        b.AppendLine("| vision tower + projector " + All(r => F($"{r.Vision.TotalSeconds:F2} s ({visionFlops / r.Vision.TotalSeconds / FmaPeak * 100:F0}% of FMA peak)")));
        b.AppendLine(F($"| prefill ({SequenceLength} rows) ") + All(r => F($"{r.Prefill.TotalSeconds:F2} s ({prefillFlops / r.Prefill.TotalSeconds / 1e9:F0} GFLOP/s = {prefillFlops / r.Prefill.TotalSeconds / FmaPeak * 100:F0}% of FMA peak)")));
        b.AppendLine("| time to first token (preprocess + vision + prefill) " + All(r => F($"{r.Ttft.TotalSeconds:F2} s")));
        b.AppendLine("| decode " + All(r => F($"{r.DecodeTokensPerSecond:F2} tokens/s ({r.DecodeTokensPerSecond / idealTokensPerSecond * 100:F0}% of the bandwidth limit)")));
        b.AppendLine("| peak resident memory (VmHWM" + (PeakWasReset ? ", ours from the load on" : ", ours including the bandwidth probe") + ") "
            + All(r => F($"{r.PeakKiB / 1048576.0:F2} GiB ({r.PeakKiB / 1048576.0 / touchedGiB:F2}× the {touchedGiB:F2} GiB of weights touched)")));
        if (Torch.Count > 0)
        {
            string Blank(Func<RunNumbers, string> f) => string.Concat(Torch.Select(t => " " + f(t.Numbers) + " |"));
            b.AppendLine("| ours ÷ PyTorch, decode tokens/s | |" + Blank(r => F($"{Ours.DecodeTokensPerSecond / r.DecodeTokensPerSecond:F2}×")));
            b.AppendLine("| PyTorch ÷ ours, time to first token | |" + Blank(r => F($"{r.Ttft.TotalSeconds / Ours.Ttft.TotalSeconds:F2}×")));
            b.AppendLine("| greedy tokens equal to ours (from the first) | |" + Blank(r => F($"{Agreement(Ours.Tokens, r.Tokens)} of {Ours.Tokens.Length}")));
            var fastest = Torch.MaxBy(t => t.Numbers.DecodeTokensPerSecond);
            b.AppendLine();
            b.AppendLine(F($"Decode: {Ours.DecodeTokensPerSecond / fastest.Numbers.DecodeTokensPerSecond:F2}× the fastest PyTorch configuration ({fastest.Info})."));
        }
        b.AppendLine();
        b.AppendLine(F($"Weights touched: all shared, vision and projector weights, lm_head, {UsedExperts} of {d.MoeLayers.Length * d.Experts} (layer, expert) pairs that received a token, and the embedding rows looked up."));
        return b.ToString();
    }

    private static int Agreement(int[] a, int[] b)
    {
        int n = 0;
        while (n < Math.Min(a.Length, b.Length) && a[n] == b[n]) n++;
        return n;
    }

    private static string CpuName()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("model name", StringComparison.Ordinal)) return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        return System.Runtime.InteropServices.RuntimeInformation.OSArchitecture.ToString();
    }

    private static string MemoryTotal()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemTotal:", StringComparison.Ordinal))
                    return (long.Parse(line["MemTotal:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1048576.0).ToString("F0", CultureInfo.InvariantCulture) + " GiB";
        }
        catch (IOException) { }
        return "? GiB";
    }
}
