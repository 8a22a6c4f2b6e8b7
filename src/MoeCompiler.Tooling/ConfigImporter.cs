using System.Text;
using System.Text.Json;
using MoeCompiler.Runtime.Checkpoints;

namespace MoeCompiler.Tooling;

/// <summary>
/// Turns a Hugging Face <c>config.json</c> (read by <see cref="HuggingFaceConfig"/>: MoE-LLaVA, LLaVA stage-II,
/// CuMo or plain Mixtral) into a variant spec in the format of <c>modelspecs/*.json</c> (<c>moe import-config</c>).
/// </summary>
public static class ConfigImporter
{
    /// <summary>The spec JSON for <paramref name="configJson"/>; <paramref name="name"/> must be a C# identifier (derived from the config when null).</summary>
    public static string ImportSpec(string configJson, string? name = null, string? sourcePath = null)
    {
        var spec = HuggingFaceConfig.Read(configJson, sourcePath);
        if (name is not null)
        {
            if (!HuggingFaceConfig.IsIdentifier(name)) throw new CheckpointException(sourcePath, $"'{name}' is not a valid variant name (a C# identifier)");
            spec = spec with { Name = name };
        }
        EnsureTokenIdsFit(spec, sourcePath);
        return Write(spec);
    }

    /// <summary>
    /// The BOS and EOS ids come from the family's tokenizer, not from config.json; a config whose vocab_size is too
    /// small to hold them would give a spec the generator refuses (MOE020/MOE021) and a model that could never stop
    /// at EOS, so the import stops here, naming the file.
    /// </summary>
    private static void EnsureTokenIdsFit(HuggingFaceConfig.SpecDraft spec, string? path)
    {
        var problems = new List<string>();
        void Check(string what, int id)
        {
            if (id < 0 || id >= spec.VocabSize)
                problems.Add($"{what} {id} is outside the vocabulary of {spec.VocabSize} ids ('vocab_size')");
            else if (id >= spec.TokenizerSize)
                problems.Add($"{what} {id} is not below the tokenizer size {spec.TokenizerSize}, so the model would never produce it");
        }
        if (spec.Bos is int bos) Check("the BOS id", bos);
        foreach (int eos in spec.Eos) Check("the end-of-sequence id", eos);
        if (problems.Count > 0)
            throw new CheckpointException(path, $"config.json cannot be imported: the {spec.TokenizerKind} tokenizer of family '{spec.Family}' " +
                                                "does not fit its vocabulary: " + string.Join("; ", problems));
    }

    /// <summary>Reads <c>config.json</c> from a folder (or the given file) and returns the spec JSON.</summary>
    public static string ImportSpecFromFolder(string folderOrConfig, string? name = null)
    {
        string path = HuggingFaceConfig.ConfigPath(folderOrConfig);
        return ImportSpec(HuggingFaceConfig.ReadText(path), name, path);
    }

    internal static string Write(HuggingFaceConfig.SpecDraft s)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("$schema", "./moe-spec.schema.json");
            w.WriteString("name", s.Name);
            w.WriteString("displayName", s.DisplayName);
            w.WriteString("description", s.Description);
            w.WriteStartObject("llm");
            w.WriteString("family", s.Family);
            w.WriteNumber("vocabSize", s.VocabSize);
            w.WriteNumber("tokenizerSize", s.TokenizerSize);
            w.WriteNumber("hiddenSize", s.HiddenSize);
            w.WriteNumber("layers", s.Layers);
            w.WriteNumber("heads", s.Heads);
            w.WriteNumber("kvHeads", s.KvHeads);
            w.WriteNumber("headDim", s.HiddenSize / s.Heads);
            w.WriteNumber("ffnSize", s.FfnSize);
            w.WriteString("ffnKind", s.FfnKind);
            w.WriteString("norm", s.Norm);
            w.WriteNumber("normEps", s.NormEps);
            w.WriteNumber("ropeTheta", s.RopeTheta);
            w.WriteNumber("rotaryFraction", s.RotaryFraction);
            w.WriteBoolean("qkvBias", s.QkvBias);
            w.WriteBoolean("attnOutBias", s.AttnOutBias);
            w.WriteBoolean("mlpBias", s.MlpBias);
            w.WriteBoolean("lmHeadBias", s.LmHeadBias);
            w.WriteBoolean("parallelResidual", s.ParallelResidual);
            w.WriteNumber("maxPositions", s.MaxPositions);
            w.WriteEndObject();
            if (s.Moe is null) w.WriteNull("moe");
            else
            {
                w.WriteStartObject("moe");
                w.WriteNumber("experts", s.Moe.Experts);
                w.WriteNumber("topK", s.Moe.TopK);
                w.WriteStartObject("placement");
                w.WriteString("kind", s.Moe.PlacementKind);
                if (s.Moe.PlacementKind == "interval")
                {
                    w.WriteNumber("start", s.Moe.Layers[0]);
                    w.WriteNumber("step", s.Moe.Layers[1] - s.Moe.Layers[0]);
                }
                if (s.Moe.PlacementKind == "list")
                {
                    w.WriteStartArray("layers");
                    foreach (int l in s.Moe.Layers) w.WriteNumberValue(l);
                    w.WriteEndArray();
                }
                w.WriteEndObject();
                w.WriteString("routing", s.Moe.Routing);
                w.WriteNumber("capacityFactor", s.Moe.CapacityFactor);
                w.WriteNumber("evalCapacityFactor", s.Moe.EvalCapacityFactor);
                w.WriteNumber("minCapacity", s.Moe.MinCapacity);
                w.WriteString("secondExpert", "deterministic");
                w.WriteBoolean("residual", s.Moe.Residual);
                w.WriteEndObject();
            }
            if (s.Vision is null) w.WriteNull("vision");
            else
            {
                var v = s.Vision;
                w.WriteStartObject("vision");
                w.WriteString("tower", v.Tower);
                w.WriteNumber("imageSize", v.ImageSize);
                w.WriteNumber("patchSize", v.PatchSize);
                w.WriteNumber("hiddenSize", v.HiddenSize);
                w.WriteNumber("layers", v.Layers);
                w.WriteNumber("heads", v.Heads);
                w.WriteNumber("mlpSize", v.MlpSize);
                w.WriteNumber("normEps", v.NormEps);
                w.WriteNumber("selectLayer", v.SelectLayer);
                w.WriteString("selectFeature", v.SelectFeature);
                WriteSmallMoe(w, v.Moe);
                w.WriteStartArray("scales");
                foreach (int sc in v.Scales) w.WriteNumberValue(sc);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            if (s.Vision is null) w.WriteNull("projector"); // text-only: no tower, so no projector either
            else
            {
                w.WriteStartObject("projector");
                w.WriteString("kind", "mlp2x_gelu");
                WriteSmallMoe(w, s.ProjectorMoe);
                w.WriteEndObject();
            }
            w.WriteStartObject("tokenizer");
            w.WriteString("kind", s.TokenizerKind);
            if (s.Bos is int bos) w.WriteNumber("bos", bos); else w.WriteNull("bos");
            w.WriteStartArray("eos");
            foreach (int e in s.Eos) w.WriteNumberValue(e);
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteStartObject("prompt");
            w.WriteString("template", s.Template);
            w.WriteEndObject();
            w.WriteStartObject("checkpoint");
            w.WriteString("layout", s.Layout);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }

    private static void WriteSmallMoe(Utf8JsonWriter w, (int Experts, int TopK)? moe)
    {
        if (moe is not (int experts, int topK)) { w.WriteNull("moe"); return; }
        w.WriteStartObject("moe");
        w.WriteNumber("experts", experts);
        w.WriteNumber("topK", topK);
        w.WriteEndObject();
    }
}
