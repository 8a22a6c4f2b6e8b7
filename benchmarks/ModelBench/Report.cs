using System.Globalization;
using System.Text;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Diagnostics;

namespace ModelBench;

/// <summary>The markdown written to the console and to --out: the setup, then one row per quantity.</summary>
public sealed class Report
{
    public required ModelCatalogEntry Entry { get; init; }
    public required BenchOptions Options { get; init; }
    public required WeightBudget Budget { get; init; }
    /// <summary>The decode rounds, each with its own bandwidth probe (see <see cref="InterleavedDecode"/>).</summary>
    public required IReadOnlyList<DecodeRound> Rounds { get; init; }
    public required double FmaPeak { get; init; }
    public required long FileBytes { get; init; }
    public required TimeSpan? WriteTime { get; init; }
    public required TimeSpan PageCacheRead { get; init; }
    public required RunNumbers Ours { get; init; }
    /// <summary>The peers in column order: PyTorch configurations (our checkpoint), then PeerBench peers (their own weights).</summary>
    public required IReadOnlyList<PeerRun> Torch { get; init; }
    public required int SequenceLength { get; init; }
    public required int ImageTokens { get; init; }
    public required int VisionPositions { get; init; }
    public required long TouchedBytes { get; init; }
    public required int UsedExperts { get; init; }
    public required string Command { get; init; }
    public required string Backend { get; init; }
    public required bool PeakWasReset { get; init; }
    /// <summary>The CPU backend's packed bf16 weights (none when packing is off or the CPU lacks AVX-512).</summary>
    public required MoeCompiler.Runtime.Backends.PackingTotals Packing { get; init; }
    /// <summary>Our weights' quantisation (null: the bf16 file as written).</summary>
    public MoeCompiler.Runtime.Tensors.QuantizationType? Quantization { get; init; }
    public TimeSpan? QuantizeTime { get; init; }

    /// <summary>Bytes per parameter of a quantised matrix: the values plus one bf16 scale per 32.</summary>
    private static double QuantizedBytes(MoeCompiler.Runtime.Tensors.QuantizationType type) =>
        (type == MoeCompiler.Runtime.Tensors.QuantizationType.Int8 ? 1.0 : 0.5) + 2.0 / 32;

    public string Markdown()
    {
        var b = new StringBuilder();
        var d = Entry.ModelDescription;
        long bytesPerToken = Budget.DecodeBytesPerToken;
        double bestBandwidth = Rounds.Max(r => r.BytesPerSecond);
        double strictLimit = bestBandwidth / bytesPerToken; // tokens/s at the best probe of the run
        double medianLimit = DecodeRounds.Median(Rounds.Select(r => r.LimitTokensPerSecond(bytesPerToken)));
        int roundCount = Rounds.Count;
        double prefillFlops = Budget.PrefillFlops(SequenceLength);
        double visionFlops = Budget.VisionFlops(VisionPositions, ImageTokens);
        double touchedGiB = TouchedBytes / (double)(1L << 30);
        string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

        b.AppendLine(F($"Run {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC on {CpuName()} ({Environment.ProcessorCount} cores visible, {Options.Threads} threads used), {MemoryTotal()} RAM; `{Command}`"));
        b.AppendLine();
        b.AppendLine(F($"- Variant `{Entry.Name}`: {Budget.TotalParameters / 1e9:F3}B parameters ({d.Layers} LLM layers, {d.MoeLayers.Length} MoE of {d.Experts} experts top-{d.TopK}), random {(Quantization is { } qt ? MoeCompiler.Runtime.Tensors.WeightQuantizer.Name(qt) : "bf16")} weights in {FileBytes / 1e9:F2} GB of safetensors") +
                     (WriteTime is { } w ? F($" written in {w.TotalSeconds:F0} s") : " (reused)") +
                     F($", mapped and bound{(Packing.Weights > 0 ? " (bf16 matrices packed)" : "")} in {Ours.Load.TotalSeconds:F1} s; page cache warmed first ({PageCacheRead.TotalSeconds:F1} s to read the file)"));
        b.AppendLine(F($"- Input: one {d.ImageSize}-pixel image ({ImageTokens} feature rows) + {Options.PromptTokens} text tokens = {SequenceLength} prefill rows; then {Options.DecodeSteps} greedy decode steps"));
        b.AppendLine(F($"- Decode in {roundCount} rounds ({string.Join('+', Rounds.Select(r => r.Steps))} steps): each round runs our steps, then one read-bandwidth probe (parallel sum over {Options.BandwidthMiB} MiB, best of 3 passes), then as many steps of each waiting peer process; ours is timed without the pauses"));
        if (Torch.Any(t => !t.SameWeights))
            b.AppendLine("- PeerBench peers run their own random weights: llama.cpp a `qwen3moe` GGUF (24 layers, all MoE, 4 experts top-2, expert FFN 4128 = 0.75 × 5504: the same weight bytes per decode token as MoeLlavaQwen4e's 12 dense + 12 MoE layers; no vision tower, so it prefills the same number of text rows and its vision time is none); libtorch MoeLlavaQwen4e's own shapes with the CLIP tower. Their greedy tokens are not comparable with ours");
        b.AppendLine(F($"- Read bandwidth probed right after our steps in each round: {Rounds.Min(r => r.BytesPerSecond) / 1e9:F1} to {bestBandwidth / 1e9:F1} GB/s (median {DecodeRounds.Median(Rounds.Select(r => r.BytesPerSecond)) / 1e9:F1}); f32 FMA peak {FmaPeak / 1e9:F0} GFLOP/s ({MachineLimits.VectorWidth} register-only FMA chains, best of the probes before and after the runs)"));
        b.AppendLine(F($"- Decode streams {bytesPerToken / 1e9:F3} GB of weights per token (shared LLM weights + top-{d.TopK} experts + lm_head + one embedding row) → bandwidth limit = probe ÷ that: median {medianLimit:F2} tokens/s over the rounds, {strictLimit:F2} tokens/s at the best probe (KV cache reads not counted)"));
        // Ours reads the packed form of the bf16 matrices: per token, the same weights at the packing ratio.
        long oursBytesPerToken = Packing.Weights == 0 ? bytesPerToken : (long)(bytesPerToken * Packing.Ratio);
        if (Quantization is { } type)
        {
            // Default policy (docs/quantization.md): LLM matrices at the type, lm_head and embedding int8; norms, routers
            // and biases (a few MB) counted at 2 bytes as in the bf16 figure.
            oursBytesPerToken = (long)((Budget.SharedLlmParameters + Budget.ActivatedExpertParameters) * QuantizedBytes(type)
                + (Budget.LmHeadParameters + d.HiddenSize) * QuantizedBytes(MoeCompiler.Runtime.Tensors.QuantizationType.Int8));
            b.AppendLine(F($"- Ours runs {MoeCompiler.Runtime.Tensors.WeightQuantizer.Name(type)} weights: a quantised copy of the same random checkpoint ({FileBytes / 1e9:F2} GB{(QuantizeTime is { } q ? F($", written in {q.TotalSeconds:F0} s") : ", reused")}), ≈ {oursBytesPerToken / 1e9:F3} GB per decode token. The limit above stays the bf16 one; the row \"of its own stream\" divides by the bytes ours reads; PyTorch (if run) reads the bf16 file"));
        }
        if (Packing.Weights > 0)
            b.AppendLine(F($"- Ours streams its bf16 matrices in the CPU backend's lossless packed form ({Packing.Weights} Linear weights, {Packing.SourceBytes / 1e9:F2} GB of bf16 → {Packing.PackedBytes / 1e9:F2} GB = {Packing.Ratio * 100:F1}%, {Packing.Exceptions:N0} values kept as exceptions): ≈ {oursBytesPerToken / 1e9:F3} GB per decode token. The limit above stays the bf16 one, the same for both implementations, so ours can exceed 100% of it; the row \"of its own stream\" divides by the bytes ours reads"));
        b.AppendLine(F($"- Prefill useful work {prefillFlops / 1e12:F2} TFLOP (2 · activated LLM params · rows, lm_head on the last row); vision tower + projector ≈ {visionFlops / 1e12:F2} TFLOP"));
        b.AppendLine();
        b.Append("| quantity | ModelBench (" + Backend + ") |");
        foreach (var t in Torch) b.Append(" " + t.Label + " (" + t.Info + ") |");
        b.AppendLine();
        b.AppendLine("|---|---|" + string.Concat(Enumerable.Repeat("---|", Torch.Count)));
        string All(Func<RunNumbers, string> f) => "| " + f(Ours) + " |" + string.Concat(Torch.Select(t => " " + f(t.Numbers) + " |"));
        b.AppendLine("| load (map + bind" + (Packing.Weights > 0 ? "; ours packs the bf16 matrices" : "") + ") " + All(r => F($"{r.Load.TotalSeconds:F2} s")));
        b.AppendLine("| vision tower + projector " + All(r => r.Vision <= TimeSpan.Zero ? "— (no vision tower)" : F($"{r.Vision.TotalSeconds:F2} s ({visionFlops / r.Vision.TotalSeconds / FmaPeak * 100:F0}% of FMA peak)")));
        b.AppendLine(F($"| prefill ({SequenceLength} rows) ") + All(r => F($"{r.Prefill.TotalSeconds:F2} s ({prefillFlops / r.Prefill.TotalSeconds / 1e9:F0} GFLOP/s = {prefillFlops / r.Prefill.TotalSeconds / FmaPeak * 100:F0}% of FMA peak)")));
        b.AppendLine("| time to first token (preprocess + vision + prefill) " + All(r => F($"{r.Ttft.TotalSeconds:F2} s")));
        b.AppendLine(F($"| **decode, median over the {roundCount} rounds of tokens/s ÷ that round's bandwidth limit** ") + AllDecode(i => F($"**{DecodeRounds.Median(Rounds.Select(r => TokensPerSecond(r, i) / r.LimitTokensPerSecond(bytesPerToken))) * 100:F0}%** (median {DecodeRounds.Median(Rounds.Select(r => TokensPerSecond(r, i))):F2} tokens/s)")));
        if (Packing.Weights > 0 || Quantization is not null)
            b.AppendLine(F($"| decode, median over the rounds of tokens/s ÷ (probe ÷ the bytes it streams per token) | {DecodeRounds.Median(Rounds.Select(r => r.OursTokensPerSecond / r.LimitTokensPerSecond(oursBytesPerToken))) * 100:F0}% of its own stream ({oursBytesPerToken / 1e9:F2} GB/token) |") +
                         string.Concat(Torch.Select(_ => " (bf16 stream: row above) |")));
        b.AppendLine(F($"| decode, all {Options.DecodeSteps} steps ÷ their time, vs the best probe ({bestBandwidth / 1e9:F1} GB/s → {strictLimit:F2} tokens/s; strict) ") + All(r => F($"{r.DecodeTokensPerSecond:F2} tokens/s ({r.DecodeTokensPerSecond / strictLimit * 100:F0}%)")));
        b.AppendLine("| peak resident memory (VmHWM" + (PeakWasReset ? ", ours from the load on, the bandwidth probes' buffer excluded" : ", ours including the bandwidth probes' buffer") + ") "
            + All(r => F($"{r.PeakKiB / 1048576.0:F2} GiB ({r.PeakKiB / 1048576.0 / touchedGiB:F2}× the {touchedGiB:F2} GiB of weights touched)")));
        if (Torch.Count > 0)
        {
            string Blank(Func<RunNumbers, string> f) => string.Concat(Torch.Select(t => " " + f(t.Numbers) + " |"));
            b.AppendLine(F($"| **ours ÷ peer, decode tokens/s, median over the {roundCount} rounds** | |") + string.Concat(Torch.Select((_, i) => F($" **{MedianRatio(i):F2}×** |"))));
            b.AppendLine(F($"| ours ÷ peer, decode tokens/s, all {Options.DecodeSteps} steps | |") + Blank(r => F($"{Ours.DecodeTokensPerSecond / r.DecodeTokensPerSecond:F2}×")));
            b.AppendLine("| peer ÷ ours, prefill time | |" + Blank(r => F($"{r.Prefill.TotalSeconds / Ours.Prefill.TotalSeconds:F2}×")));
            b.AppendLine("| peer ÷ ours, time to first token | |" + Blank(r => F($"{r.Ttft.TotalSeconds / Ours.Ttft.TotalSeconds:F2}×")));
            b.AppendLine("| greedy tokens equal to ours (from the first) | |" + string.Concat(Torch.Select(t => t.SameWeights ? F($" {Agreement(Ours.Tokens, t.Numbers.Tokens)} of {Ours.Tokens.Length} |") : " n/a (own weights) |")));
            int fastest = Enumerable.Range(0, Torch.Count).MinBy(MedianRatio);
            b.AppendLine();
            b.AppendLine(F($"Decode: {MedianRatio(fastest):F2}× the fastest peer ({Torch[fastest].Label}: {Torch[fastest].Info}) as the median of the per-round ratios, {Ours.DecodeTokensPerSecond / Torch[fastest].Numbers.DecodeTokensPerSecond:F2}× over all steps."));
        }
        b.AppendLine();
        AppendRounds(b, bytesPerToken);
        b.AppendLine();
        b.AppendLine(F($"Weights touched: all shared, vision and projector weights, lm_head, {UsedExperts} of {d.MoeLayers.Length * d.Experts} (layer, expert) pairs that received a token, and the embedding rows looked up."));
        return b.ToString();
    }

    /// <summary>The run's numbers for benchmarks/run-peers.sh: ours and every peer, medians over the paired rounds.</summary>
    public string Json()
    {
        object Numbers(RunNumbers r, int column) => new Dictionary<string, object>
        {
            ["decode_tps_median"] = DecodeRounds.Median(Rounds.Select(x => TokensPerSecond(x, column))),
            ["decode_tps_all"] = r.DecodeTokensPerSecond,
            ["prefill_s"] = r.Prefill.TotalSeconds,
            ["vision_s"] = r.Vision.TotalSeconds,
            ["ttft_s"] = r.Ttft.TotalSeconds,
            ["load_s"] = r.Load.TotalSeconds,
            ["peak_kib"] = r.PeakKiB,
        };
        var root = new Dictionary<string, object>
        {
            ["variant"] = Entry.Name,
            ["threads"] = Options.Threads,
            ["decode_steps"] = Options.DecodeSteps,
            ["rounds"] = Rounds.Select(r => r.Steps).ToArray(),
            ["prefill_rows"] = SequenceLength,
            ["bandwidth_gbs_median"] = DecodeRounds.Median(Rounds.Select(r => r.BytesPerSecond)) / 1e9,
            ["ours"] = new Dictionary<string, object>
            {
                ["label"] = "ModelBench (" + Backend + ")",
                ["weights"] = Packing.Weights > 0 ? "bf16 (packed)" : "as stored",
                ["numbers"] = Numbers(Ours, -1),
            },
            ["peers"] = Torch.Select((t, i) => new Dictionary<string, object>
            {
                ["label"] = t.Label,
                ["info"] = t.Info,
                ["same_weights"] = t.SameWeights,
                ["prompt_rows"] = t.PromptRows,
                ["numbers"] = Numbers(t.Numbers, i),
                ["ours_over_peer_decode_median"] = MedianRatio(i),
            }).ToArray(),
        };
        return System.Text.Json.JsonSerializer.Serialize(root, new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Decode tokens/s in one round: ours for -1, else PyTorch configuration <paramref name="implementation"/>.</summary>
    private static double TokensPerSecond(DecodeRound round, int implementation) =>
        implementation < 0 ? round.OursTokensPerSecond : round.TorchTokensPerSecond(implementation);

    private double MedianRatio(int configuration) =>
        DecodeRounds.Median(Rounds.Select(r => r.OursTokensPerSecond / r.TorchTokensPerSecond(configuration)));

    /// <summary>Cells for ours (-1) and each PyTorch configuration, in the table's column order.</summary>
    private string AllDecode(Func<int, string> cell) =>
        "| " + cell(-1) + " |" + string.Concat(Torch.Select((_, i) => " " + cell(i) + " |"));

    /// <summary>The per-round table: each round's probe, its bandwidth limit, and every implementation's tokens/s.</summary>
    private void AppendRounds(StringBuilder b, long bytesPerToken)
    {
        string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
        var names = Torch.Select(t => t.Label).ToArray();
        b.Append("| round | steps | probe GB/s | limit tokens/s | ours tokens/s (% of limit) |");
        foreach (string n in names) b.Append($" {n} tokens/s (% of limit) | ours ÷ {n} |");
        b.AppendLine();
        b.AppendLine("|---|---|---|---|---|" + string.Concat(Enumerable.Repeat("---|---|", names.Length)));
        string Speed(double tokensPerSecond, double limit) => F($"{tokensPerSecond:F2} ({tokensPerSecond / limit * 100:F0}%)");
        for (int k = 0; k < Rounds.Count; k++)
        {
            var r = Rounds[k];
            double limit = r.LimitTokensPerSecond(bytesPerToken);
            b.Append(F($"| {k + 1} | {r.Steps} | {r.BytesPerSecond / 1e9:F1} | {limit:F2} | {Speed(r.OursTokensPerSecond, limit)} |"));
            for (int i = 0; i < names.Length; i++)
                b.Append(F($" {Speed(r.TorchTokensPerSecond(i), limit)} | {r.OursTokensPerSecond / r.TorchTokensPerSecond(i):F2}× |"));
            b.AppendLine();
        }
        double Med(Func<DecodeRound, double> f) => DecodeRounds.Median(Rounds.Select(f));
        b.Append(F($"| median | | {Med(r => r.BytesPerSecond) / 1e9:F1} | {Med(r => r.LimitTokensPerSecond(bytesPerToken)):F2} | {Med(r => r.OursTokensPerSecond):F2} ({Med(r => r.OursTokensPerSecond / r.LimitTokensPerSecond(bytesPerToken)) * 100:F0}%) |"));
        for (int i = 0; i < names.Length; i++)
        {
            int c = i;
            b.Append(F($" {Med(r => r.TorchTokensPerSecond(c)):F2} ({Med(r => r.TorchTokensPerSecond(c) / r.LimitTokensPerSecond(bytesPerToken)) * 100:F0}%) | {MedianRatio(c):F2}× |"));
        }
        b.AppendLine();
        b.AppendLine();
        b.AppendLine("Medians are taken column by column, so the median % is not the median tokens/s ÷ the median limit.");
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
