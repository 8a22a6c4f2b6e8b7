using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Modules;

namespace MoeCompiler.Runtime.Generation;

/// <summary>
/// One compiled variant: its facts and how to build it. Every generated catalog (<c>ModelCatalog.Variants</c> of
/// each assembly that compiles specs) lists entries of this one runtime type, so catalogs of several assemblies can
/// be combined, and an assembly that compiles its own specs while referencing another never declares it twice.
/// </summary>
public sealed class ModelCatalogEntry
{
    public ModelCatalogEntry(string name, string displayName, string description, long totalParameters, long activatedParameters,
        long paperTotalParameters, long paperActivatedParameters, string layerMap, ModelDescription modelDescription, WeightManifest manifest,
        Func<IBoundWeights, IBackend, ILanguageModel> create, Func<string, IBackend, BindOptions?, ILanguageModel> load)
    {
        Name = name;
        DisplayName = displayName;
        Description = description;
        TotalParameters = totalParameters;
        ActivatedParameters = activatedParameters;
        PaperTotalParameters = paperTotalParameters;
        PaperActivatedParameters = paperActivatedParameters;
        LayerMap = layerMap;
        ModelDescription = modelDescription;
        Manifest = manifest;
        Create = create;
        Load = load;
    }

    public string Name { get; }
    public string DisplayName { get; }
    public string Description { get; }
    /// <summary>Exact count over the weight manifest (LLM, the vision layers that run, projector).</summary>
    public long TotalParameters { get; }
    /// <summary>Exact count of the parameters one token uses (top-k experts of each MoE layer).</summary>
    public long ActivatedParameters { get; }
    /// <summary>The MoE-LLaVA paper's formula (appendix A.1), LLM only.</summary>
    public long PaperTotalParameters { get; }
    public long PaperActivatedParameters { get; }
    /// <summary>One letter per LLM layer: M = MoE, D = dense.</summary>
    public string LayerMap { get; }
    public ModelDescription ModelDescription { get; }
    public WeightManifest Manifest { get; }
    /// <summary>Builds the variant from tensors bound to its manifest (an IVisionLanguageModel unless the variant is text-only).</summary>
    public Func<IBoundWeights, IBackend, ILanguageModel> Create { get; }
    /// <summary>Opens and binds a checkpoint folder and builds the variant (the model owns the mapping; dispose it).</summary>
    public Func<string, IBackend, BindOptions?, ILanguageModel> Load { get; }

    /// <summary>Opens a checkpoint folder, file or hub-cache repository id (ORG/NAME) with its tokenizer and pipeline (see <see cref="LoadedModel.Open"/>).</summary>
    public LoadedModel Open(string weights, ModelLoadOptions? options = null) =>
        LoadedModel.Open(ModelDescription, Manifest, Load, weights, options);

    public override string ToString() => Name;
}
