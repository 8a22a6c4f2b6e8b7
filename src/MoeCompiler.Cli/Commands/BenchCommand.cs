using System.CommandLine;
using MoeCompiler.Runtime.Diagnostics;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Tensors;
using Spectre.Console;

namespace MoeCompiler.Cli.Commands;

/// <summary>
/// `moe bench`: prefill and decode speed of a variant, next to this machine's limits measured in the same run
/// (read bandwidth for decoding, FMA peak for prefill). Without --weights it benchmarks seeded random weights
/// written to a temporary folder. With --device cuda the limits are the GPU's spec-sheet HBM bandwidth and dense
/// bf16 tensor-core peak (<see cref="MoeCompiler.Cuda.DevicePeaks"/>; unknown GPUs show no fraction), and decode
/// steps run as CUDA graphs.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var variant = new Argument<string>("variant") { Description = "The variant (see 'moe list')." };
        var weights = new Option<string?>("--weights", "-w") { Description = "Checkpoint folder (default: random weights in a temporary folder)." };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt length for prefill.", DefaultValueFactory = _ => 32 };
        var decodeTokens = new Option<int>("--tokens") { Description = "Tokens to decode.", DefaultValueFactory = _ => 32 };
        var dtype = CommonOptions.WeightType();
        var json = CommonOptions.Json();
        var device = CommonOptions.Device();
        var command = new Command("bench", "Measure prefill and decode speed against the machine's bandwidth and FMA limits.")
        {
            variant, weights, promptTokens, decodeTokens, dtype, json, device,
        };
        command.SetAction((parse, cancellation) =>
        {
            var entry = Variants.Resolve(parse.GetValue(variant)!);
            var output = new Output(parse.InvocationConfiguration.Output, parse.GetValue(json));
            string? folder = parse.GetValue(weights);
            string deviceName = parse.GetValue(device)!;
            // Probe the device before writing weights (no CUDA: exit 3 at once); the session opens its own backend.
            var probe = ModelSession.CreateBackend(deviceName);
            bool gpu = probe is MoeCompiler.Cuda.CudaBackend;
            if (gpu) probe.Dispose();
            string? temporary = null;
            if (folder is null)
            {
                temporary = Path.Combine(Path.GetTempPath(), "moe-bench-" + Guid.NewGuid().ToString("N"));
                // Quantised types are made at load from bf16 random weights.
                var created = parse.GetValue(dtype) is DType d && d.IsQuantized() ? DType.BF16 : parse.GetValue(dtype) ?? DType.F32;
                CreateWeightsCommand.Write(entry.Manifest, temporary, seed: 1, created);
                folder = temporary;
            }
            try
            {
                using var session = ModelSession.Open(entry, folder, deviceName, parse.GetValue(dtype));
                var limits = session.Loaded.Backend is MoeCompiler.Cuda.CudaBackend cuda ? DeviceLimits(cuda) : MachineLimits.Measure(Environment.ProcessorCount, quick: true);
                int p = Math.Max(1, parse.GetValue(promptTokens)), n = Math.Max(1, parse.GetValue(decodeTokens));
                var ids = Enumerable.Range(0, p).Select(i => 1 + i * 7919 % Math.Max(2, entry.ModelDescription.TokenizerSize - 1)).ToArray();
                var generator = new TextGenerator(session.Loaded.Model, session.Loaded.Backend);
                var result = generator.Generate(new GenerationRequest
                {
                    PromptIds = ids,
                    Options = new GenerationOptions { MaxNewTokens = n, StopOnEos = false },
                }, cancellationToken: cancellation);
                var t = result.Timings;
                var budget = new WeightBudget(entry.Manifest, entry.ModelDescription, session.Loaded.WeightBytes);
                double bytesPerToken = budget.DecodeBytesPerToken;
                double idealDecode = limits.ReadGBps * 1e9 / bytesPerToken;
                double prefillFlops = budget.PrefillFlops(t.PromptTokens);
                double prefillGflops = prefillFlops / Math.Max(1e-9, t.Prefill.TotalSeconds) / 1e9;
                string computePeak = gpu ? "GFLOP/s bf16 tensor-core peak" : "GFLOP/s FMA peak";
                string Ratio(double value) => double.IsFinite(value) ? value.ToString("P0", System.Globalization.CultureInfo.InvariantCulture) : "unknown";
                var rows = new (string What, string Measured, string Limit, string Ratio)[]
                {
                    ("decode", $"{t.DecodeTokensPerSecond:0.0} tokens/s", $"{idealDecode:0.0} tokens/s ({Output.Bytes(bytesPerToken)}/token at {limits.ReadGBps:0.0} GB/s)",
                        Ratio(t.DecodeTokensPerSecond / idealDecode)),
                    ("prefill", $"{t.PrefillTokensPerSecond:0.0} tokens/s, {prefillGflops:0.0} GFLOP/s", $"{limits.FmaGflops:0.0} {computePeak}",
                        Ratio(prefillGflops / limits.FmaGflops)),
                };
                if (output.Json)
                {
                    output.WriteJson(new
                    {
                        // Limits of a GPU missing from the spec-sheet table are null (unknown), not NaN.
                        Variant = entry.Name, Device = session.Loaded.Backend.Name, ReadGBps = Known(limits.ReadGBps), FmaGflops = Known(limits.FmaGflops),
                        t.PromptTokens, DecodeSteps = t.DecodeSteps, t.DecodeTokensPerSecond, IdealDecodeTokensPerSecond = Known(idealDecode),
                        t.PrefillTokensPerSecond, PrefillGflops = prefillGflops,
                        DecodeFractionOfLimit = Known(t.DecodeTokensPerSecond / idealDecode), PrefillFractionOfPeak = Known(prefillGflops / limits.FmaGflops),
                    });
                    return Task.FromResult(ExitCodes.Success);
                }
                var table = new Table().Border(TableBorder.Rounded).Title(gpu ? $"{entry.Name} on {Markup.Escape(session.Loaded.Backend.Name)}" : $"{entry.Name} on {Environment.ProcessorCount} cores")
                    .AddColumn("phase").AddColumn("measured").AddColumn("machine limit (same run)").AddColumn(new TableColumn("fraction").RightAligned());
                foreach (var r in rows) table.AddRow(r.What, r.Measured, Markup.Escape(r.Limit), r.Ratio);
                output.Console.Write(table);
                return Task.FromResult(ExitCodes.Success);
            }
            finally
            {
                if (temporary is not null) Directory.Delete(temporary, recursive: true);
            }
        });
        return command;
    }

    private static double? Known(double value) => double.IsFinite(value) ? value : null;

    /// <summary>The GPU's spec-sheet limits in the units of <see cref="MachineLimits"/> (GB/s, GFLOP/s); NaN when unknown.</summary>
    private static MachineLimits DeviceLimits(MoeCompiler.Cuda.CudaBackend gpu) =>
        new(FmaGflops: MoeCompiler.Cuda.DevicePeaks.Bf16Tflops(gpu.DeviceName) * 1000, ReadGBps: MoeCompiler.Cuda.DevicePeaks.HbmGBps(gpu.DeviceName), Threads: 1);
}
