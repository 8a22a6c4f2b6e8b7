using System.Diagnostics;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Generation;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cli;

/// <summary>
/// Opens a <see cref="LoadedModel"/> for run, chat, routing, serve and bench with the CLI's error wording, on the
/// backend named by --device, and disposes that backend with the model (LoadedModel never disposes a given backend).
/// Everything else is the LoadedModel's own: use <see cref="Loaded"/>.
/// </summary>
internal sealed class ModelSession : IDisposable
{
    private ModelSession(ModelCatalogEntry variant, LoadedModel loaded)
    {
        Variant = variant;
        Loaded = loaded;
    }

    public ModelCatalogEntry Variant { get; }
    public LoadedModel Loaded { get; }

    /// <param name="source">--revision and --vision-tower (<see cref="CommonOptions.CheckpointSourceOptions"/>); the
    /// backend and weight dtype are set here from <paramref name="device"/> and <paramref name="dtype"/>.</param>
    public static ModelSession Open(ModelCatalogEntry variant, string weights, string device, DType? dtype, ModelLoadOptions? source = null)
    {
        source ??= new ModelLoadOptions();
        if (!Directory.Exists(weights) && !File.Exists(weights) && !HubCache.IsRepoId(weights))
            throw new UserInputException($"weights not found: {weights} (a checkpoint folder: *.safetensors or pytorch_model*.bin, a repository id ORG/NAME in the Hugging Face hub cache, or create one with 'moe create-weights')");
        if (source.VisionTower is { } tower && !variant.ModelDescription.HasVision)
            throw new UserInputException($"--vision-tower {tower}: {variant.Name} is text-only: it has no vision tower");
        var backend = CreateBackend(device);
        try
        {
            var options = source with { Backend = backend, WeightDType = dtype };
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
        var backend = Loaded.Backend;
        Loaded.Dispose();
        if (backend is not CpuBackend) backend.Dispose();
    }
}
