namespace MoeCompiler.Generators.Model
{
    /// <summary>The LLM half of a spec, validated. Names follow the spec keys.</summary>
    internal sealed record LlmModel(
        LlmFamily Family,
        int VocabSize,
        int TokenizerSize,
        int HiddenSize,
        int Layers,
        int Heads,
        int KvHeads,
        int HeadDim,
        int FfnSize,
        FfnKind FfnKind,
        NormKind Norm,
        double NormEps,
        double RopeTheta,
        double RotaryFraction,
        int RotaryDims,
        bool QkvBias,
        bool AttnOutBias,
        bool MlpBias,
        bool LmHeadBias,
        bool ParallelResidual,
        int MaxPositions);

    /// <summary>MoE of the LLM: which layers, how many experts, how tokens are routed.</summary>
    internal sealed record MoeModel(
        int Experts,
        int TopK,
        PlacementKind PlacementKind,
        string PlacementText,
        EquatableArray<int> Layers,
        RoutingKind Routing,
        double CapacityFactor,
        double EvalCapacityFactor,
        int MinCapacity,
        SecondExpertPolicy SecondExpert,
        bool Residual);

    /// <summary>A CuMo-style sparse MLP (vision tower or projector): softmax top-k, no capacity.</summary>
    internal sealed record SideMoeModel(int Experts, int TopK);

    internal sealed record VisionModel(
        VisionTowerKind Tower,
        int ImageSize,
        int PatchSize,
        int HiddenSize,
        int Layers,
        int Heads,
        int MlpSize,
        double NormEps,
        int SelectLayer,
        SelectFeature SelectFeature,
        SideMoeModel? Moe,
        EquatableArray<int> Scales)
    {
        public int PatchesPerSide => ImageSize / PatchSize;
        public int Patches => PatchesPerSide * PatchesPerSide;
        /// <summary>Encoder layers that run: the ones up to and including the selected hidden state.</summary>
        public int UsedLayers => SelectLayer < 0 ? Layers + 1 + SelectLayer : SelectLayer;
        /// <summary>Rows the tower outputs (CLIP: CLS + patches).</summary>
        public int TowerRows => Profiles.Of(Tower).ClassToken ? Patches + 1 : Patches;
        /// <summary>Rows kept as image features: "patch" drops row 0 (CLS for CLIP, the first patch for SigLIP).</summary>
        public int FeatureRows => SelectFeature switch
        {
            SelectFeature.Patch => TowerRows - 1,
            SelectFeature.ClsPatch => TowerRows,
            _ => throw new System.ArgumentOutOfRangeException(nameof(SelectFeature)),
        };
        public int FeatureWidth => HiddenSize * Scales.Count;
    }

    internal sealed record ProjectorModel(string Kind, SideMoeModel? Moe);

    internal sealed record TokenizerModel(string Kind, int? Bos, EquatableArray<int> Eos);

    /// <summary>
    /// One validated spec: everything the emitter needs, nothing Roslyn-specific. A text-only variant has neither
    /// <see cref="Vision"/> nor <see cref="Projector"/>; a vision variant has both.
    /// </summary>
    internal sealed record VariantModel(
        string FileName,
        string Name,
        string DisplayName,
        string Description,
        LlmModel Llm,
        MoeModel? Moe,
        VisionModel? Vision,
        ProjectorModel? Projector,
        TokenizerModel Tokenizer,
        string Template,
        CheckpointLayout Layout)
    {
        public bool HasVision => Vision is not null;

        public bool IsMoeLayer(int layer)
        {
            if (Moe is null) return false;
            foreach (int i in Moe.Layers)
            {
                if (i == layer) return true;
            }

            return false;
        }
    }

    /// <summary>What a spec file produced: a variant (null when it has errors) and its diagnostics.</summary>
    internal sealed record SpecResult(string FilePath, string? Name, VariantModel? Variant, EquatableArray<DiagnosticInfo> Diagnostics, Json.JsonPosition NamePosition);

    /// <summary>The catalog's view of one variant: changes only when the catalog entry would.</summary>
    internal sealed record CatalogEntryModel(
        string Name,
        string DisplayName,
        string Description,
        long TotalParameters,
        long ActivatedParameters,
        long PaperTotalParameters,
        long PaperActivatedParameters,
        string LayerMap);
}
