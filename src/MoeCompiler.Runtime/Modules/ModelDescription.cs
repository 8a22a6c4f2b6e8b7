namespace MoeCompiler.Runtime.Modules;

/// <summary>
/// The facts about a compiled variant that the generic pipeline needs at run time (tokenizer, template, image
/// preprocessing, cache geometry, MoE map). Emitted by the generator from the spec.
/// </summary>
public sealed record ModelDescription
{
    public required string Name { get; init; }
    public required string DisplayName { get; init; }
    public required string LlmFamily { get; init; }          // stablelm | qwen | phi | mistral | mixtral
    public required int VocabSize { get; init; }
    /// <summary>Ids at or above this are never produced (the reference shrinks lm_head to len(tokenizer)).</summary>
    public required int TokenizerSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int MaxPositions { get; init; }
    public required int[] MoeLayers { get; init; }
    public required int Experts { get; init; }
    public required int TopK { get; init; }
    public required string TokenizerKind { get; init; }     // arcade100k | qwen | gpt2 | sentencepiece
    public required int[] EosIds { get; init; }
    public int? BosId { get; init; }
    public required string PromptTemplate { get; init; }    // phi | stablelm | qwen | openchat | plain | mistral_instruct_system | mistral_instruct
    public required string VisionTower { get; init; }       // clip | siglip | none
    public required int ImageSize { get; init; }
    public required int ImageTokens { get; init; }
    public required float[] ImageMean { get; init; }
    public required float[] ImageStd { get; init; }
    public required int[] VisionScales { get; init; }
    public required long TotalParameters { get; init; }
    public required long ActivatedParameters { get; init; }

    /// <summary>False for a text-only variant (<see cref="VisionTower"/> "none"): it takes no image.</summary>
    public bool HasVision => VisionTower != "none";
}
