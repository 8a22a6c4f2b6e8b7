using System.Diagnostics;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cli;

/// <summary>Where the weights come from beyond the -w path: a hub-cache revision and a separate vision tower.</summary>
internal sealed record CheckpointSource(string? Revision = null, string? VisionTower = null);

/// <summary>A variant bound to a checkpoint folder on a backend (a <see cref="LoadedModel"/>), with the CLI's error
/// wording: what run, chat, routing and bench share.</summary>
internal sealed class ModelSession : IDisposable
{
    private ModelSession(ModelCatalogEntry variant, LoadedModel loaded)
    {
        Variant = variant;
        Loaded = loaded;
    }

    public ModelCatalogEntry Variant { get; }
    public LoadedModel Loaded { get; }
    public IBackend Backend => Loaded.Backend;
    public ILanguageModel Model => Loaded.Model;
    public VisionLanguagePipeline Pipeline => Loaded.Pipeline;
    /// <summary>Where the tokenizer came from: a file of the checkpoint folder or "bundled KIND".</summary>
    public string TokenizerSource => Loaded.TokenizerSource;
    /// <summary>The checkpoint folder or file bound (a hub-cache snapshot folder for a repository id).</summary>
    public string CheckpointPath => Loaded.CheckpointPath;
    /// <summary>Where the vision tower's weights came from; null for a text-only variant.</summary>
    public string? VisionTowerSource => Loaded.VisionTowerSource;
    public TimeSpan LoadTime => Loaded.LoadTime;
    /// <summary>Bytes per weight element as bound (the checkpoint's dtype unless converted at load).</summary>
    public int WeightBytes => Loaded.WeightBytes;

    public static ModelSession Open(ModelCatalogEntry variant, string weights, string device, DType? dtype, CheckpointSource? source = null)
    {
        source ??= new CheckpointSource();
        if (!Directory.Exists(weights) && !File.Exists(weights) && !HubCache.IsRepoId(weights))
            throw new UserInputException($"weights not found: {weights} (a checkpoint folder: *.safetensors or pytorch_model*.bin, a repository id ORG/NAME in the Hugging Face hub cache, or create one with 'moe create-weights')");
        if (source.VisionTower is { } tower && !variant.ModelDescription.HasVision)
            throw new UserInputException($"--vision-tower {tower}: {variant.Name} is text-only: it has no vision tower");
        var backend = CreateBackend(device);
        try
        {
            var options = new ModelLoadOptions { Backend = backend, WeightDType = dtype, Revision = source.Revision, VisionTower = source.VisionTower };
            var loaded = LoadedModel.Open(variant.ModelDescription, variant.Manifest, variant.Load, weights, options);
            return new ModelSession(variant, loaded);
        }
        catch (CheckpointException e) when (e is not CheckpointBindingException && e is not CheckpointTokenizerException && e.Message.Contains("config.json does not match variant", StringComparison.Ordinal))
        {
            if (backend is not CpuBackend) backend.Dispose();
            throw new UserInputException(e.Message + "\nUse 'moe import-config' to make a matching spec.");
        }
        catch
        {
            if (backend is not CpuBackend) backend.Dispose();
            throw;
        }
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
        var backend = Backend;
        Loaded.Dispose();
        if (backend is not CpuBackend) backend.Dispose();
    }
}
