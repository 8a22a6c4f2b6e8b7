using System.Diagnostics;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cli;

/// <summary>A variant bound to a checkpoint folder on a backend, with its pipeline: what run, chat and routing share.</summary>
internal sealed class ModelSession : IDisposable
{
    private ModelSession(ModelCatalogEntry variant, IBackend backend, IVisionLanguageModel model, TimeSpan loadTime, int weightBytes)
    {
        WeightBytes = weightBytes;
        Variant = variant;
        Backend = backend;
        Model = model;
        LoadTime = loadTime;
        Pipeline = new VisionLanguagePipeline(model, backend);
    }

    public ModelCatalogEntry Variant { get; }
    public IBackend Backend { get; }
    public IVisionLanguageModel Model { get; }
    public VisionLanguagePipeline Pipeline { get; }
    public TimeSpan LoadTime { get; }
    /// <summary>Bytes per weight element as bound (the checkpoint's dtype unless converted at load).</summary>
    public int WeightBytes { get; }

    public static ModelSession Open(ModelCatalogEntry variant, string weights, string device, DType? dtype)
    {
        if (!Directory.Exists(weights) && !File.Exists(weights))
            throw new UserInputException($"weights not found: {weights} (a checkpoint folder: *.safetensors or pytorch_model*.bin, or create one with 'moe create-weights')");
        string configPath = Directory.Exists(weights) ? Path.Combine(weights, "config.json") : "";
        if (configPath.Length > 0 && File.Exists(configPath))
        {
            var mismatches = ConfigImporter.FindMismatches(weights, variant.ModelDescription);
            if (mismatches.Count > 0)
                throw new UserInputException($"{configPath} does not match {variant.Name}:\n  " + string.Join("\n  ", mismatches) +
                    "\nUse 'moe import-config' to make a matching spec.");
        }
        var backend = CreateBackend(device);
        long start = Stopwatch.GetTimestamp();
        try
        {
            var model = variant.Load(weights, backend, new BindOptions { TargetDType = dtype });
            return new ModelSession(variant, backend, model, Stopwatch.GetElapsedTime(start), dtype is DType d ? Commands.CommonOptions.ReportedBytes(d) : ProbeWeightBytes(variant, weights));
        }
        catch
        {
            if (backend is not CpuBackend) backend.Dispose();
            throw;
        }
    }

    private static int ProbeWeightBytes(ModelCatalogEntry variant, string weights)
    {
        using var folder = CheckpointFolder.Open(weights);
        foreach (var entry in variant.Manifest.Entries)
            if (entry.Shape.Length == 2 && folder.TryGetInfo(entry.Key, out var info) && info.DType is DType d)
                return Commands.CommonOptions.ReportedBytes(d);
        return 4;
    }

    public static IBackend CreateBackend(string device)
    {
        switch (device.ToLowerInvariant())
        {
            case "cpu":
                return CpuBackend.Shared;
            case "cuda":
            case "gpu":
                if (MoeCompiler.Cuda.CudaBackend.TryCreate(out var cuda, out string reason)) return cuda!;
                throw new UserInputException($"no CUDA backend here: {reason}. Use --device cpu.", ExitCodes.Unavailable);
            default:
                throw new UserInputException($"--device must be cpu or cuda, not '{device}'");
        }
    }

    public void Dispose()
    {
        if (Backend is not CpuBackend) Backend.Dispose();
    }
}
