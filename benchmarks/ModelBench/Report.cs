using System.Globalization;
using System.Text;
using MoeCompiler.Models;

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
    public required RunNumbers? Torch { get; init; }
    public required string? TorchInfo { get; init; }
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
        b.AppendLine("| quantity | ModelBench (" + Backend + ") | PyTorch" + (TorchInfo is null ? "" : " (" + TorchInfo + ")") + " |");
        b.AppendLine("|---|---|---|");
        string Both(Func<RunNumbers, string> f) => "| " + f(Ours) + " | " + (Torch is null ? "not run" : f(Torch)) + " |";
        b.AppendLine("| load (map + bind) " + Both(r => F($"{r.Load.TotalSeconds:F2} s")));
        b.AppendLine("| vision tower + projector " + Both(r => F($"{r.Vision.TotalSeconds:F2} s ({visionFlops / r.Vision.TotalSeconds / FmaPeak * 100:F0}% of FMA peak)")));
        b.AppendLine(F($"| prefill ({SequenceLength} rows) ") + Both(r => F($"{r.Prefill.TotalSeconds:F2} s ({prefillFlops / r.Prefill.TotalSeconds / 1e9:F0} GFLOP/s = {prefillFlops / r.Prefill.TotalSeconds / FmaPeak * 100:F0}% of FMA peak)")));
        b.AppendLine("| time to first token (preprocess + vision + prefill) " + Both(r => F($"{r.Ttft.TotalSeconds:F2} s")));
        b.AppendLine("| decode " + Both(r => F($"{r.DecodeTokensPerSecond:F2} tokens/s ({r.DecodeTokensPerSecond / idealTokensPerSecond * 100:F0}% of the bandwidth limit)")));
        b.AppendLine("| peak resident memory (VmHWM" + (PeakWasReset ? ", ours from the load on" : ", ours including the 1 GiB bandwidth probe") + ") " + Both(r => F($"{r.PeakKiB / 1048576.0:F2} GiB ({r.PeakKiB / 1048576.0 / touchedGiB:F2}× the {touchedGiB:F2} GiB of weights touched)")));
        if (Torch is not null)
        {
            int agree = 0;
            while (agree < Math.Min(Ours.Tokens.Length, Torch.Tokens.Length) && Ours.Tokens[agree] == Torch.Tokens[agree]) agree++;
            b.AppendLine(F($"| decode speed ratio | {Ours.DecodeTokensPerSecond / Torch.DecodeTokensPerSecond:F2}× PyTorch | 1 |"));
            b.AppendLine(F($"| time-to-first-token speed ratio (PyTorch TTFT ÷ ours) | {Torch.Ttft.TotalSeconds / Ours.Ttft.TotalSeconds:F2}× | 1 |"));
            b.AppendLine(F($"| greedy tokens equal to PyTorch's (from the first) | {agree} of {Ours.Tokens.Length} | |"));
        }
        b.AppendLine();
        b.AppendLine(F($"Weights touched: all shared, vision and projector weights, lm_head, {UsedExperts} of {d.MoeLayers.Length * d.Experts} (layer, expert) pairs that received a token, and the embedding rows looked up."));
        return b.ToString();
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
