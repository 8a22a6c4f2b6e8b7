using System.Globalization;
using System.Text;
using System.Text.Json;
using MoeCompiler.Runtime.Modules;

namespace MoeCompiler.Runtime.Checkpoints;

/// <summary>
/// Reads a Hugging Face <c>config.json</c> of a MoE-LLaVA (moe_llava_stablelm / _qwen / _phi / _mistral),
/// LLaVA stage-II (llava_stablelm / _qwen / _phi), CuMo (llava_mistral / llava_mixtral) or plain Mixtral model
/// into the spec it describes, and checks a folder's config against a compiled variant before any weights are
/// loaded (<see cref="EnsureMatches"/>, called by <c>LoadedModel.Open</c>). Facts that the config does not carry
/// (tokenizer, prompt template, vision tower dimensions) come from the base model's family and the tower's name.
/// Writing the spec file is a tool: <c>MoeCompiler.Tooling.ConfigImporter</c>.
/// </summary>
public static class HuggingFaceConfig
{

    /// <summary>Every way the folder's config.json disagrees with a compiled variant; empty when they agree.</summary>
    public static IReadOnlyList<string> FindMismatches(string folderOrConfig, ModelDescription description)
    {
        ArgumentNullException.ThrowIfNull(description);
        string path = ConfigPath(folderOrConfig);
        var spec = Read(ReadText(path), path);
        var problems = new List<string>();
        void Compare<T>(string what, T config, T variant)
        {
            if (!EqualityComparer<T>.Default.Equals(config, variant))
                problems.Add($"{what}: config.json says {Show(config)}, variant {description.Name} has {Show(variant)}");
        }
        Compare("LLM family", spec.Family, description.LlmFamily);
        Compare("vocabulary size", spec.VocabSize, description.VocabSize);
        Compare("hidden size", spec.HiddenSize, description.HiddenSize);
        Compare("layers", spec.Layers, description.Layers);
        Compare("attention heads", spec.Heads, description.Heads);
        Compare("key/value heads", spec.KvHeads, description.KvHeads);
        Compare("head dimension", spec.HiddenSize / spec.Heads, description.HeadDim);
        Compare("MoE layers", string.Join(",", spec.Moe?.Layers ?? Array.Empty<int>()), string.Join(",", description.MoeLayers));
        if (spec.Moe is not null && description.MoeLayers.Length > 0)
        {
            Compare("experts", spec.Moe.Experts, description.Experts);
            Compare("top-k", spec.Moe.TopK, description.TopK);
        }
        Compare("vision tower", spec.Vision?.Tower ?? "none", description.VisionTower);
        if (spec.Vision is not null) Compare("image size", spec.Vision.ImageSize, description.ImageSize);
        return problems;
    }

    /// <summary>
    /// Throws a <see cref="CheckpointException"/> listing every mismatch, before weights are loaded. A folder
    /// without config.json passes unless <paramref name="requireConfig"/> is set (the weights are checked anyway).
    /// </summary>
    public static void EnsureMatches(string folderOrConfig, ModelDescription description, bool requireConfig = false)
    {
        if (!requireConfig && !File.Exists(ConfigPath(folderOrConfig))) return;
        var problems = FindMismatches(folderOrConfig, description);
        if (problems.Count > 0)
            throw new CheckpointException(ConfigPath(folderOrConfig),
                $"config.json does not match variant {description.Name}:\n  " + string.Join("\n  ", problems));
    }

    private static string Show<T>(T value) => value switch
    {
        null => "none",
        string s => s.Length == 0 ? "none" : s,
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    internal static string ConfigPath(string folderOrConfig) =>
        Directory.Exists(folderOrConfig) ? Path.Combine(folderOrConfig, "config.json") : folderOrConfig;

    // config.json files are a few kilobytes; anything past this is not one
    private const long MaxConfigBytes = 16 << 20;

    internal static string ReadText(string path) =>
        MoeCompiler.IO.RegularFile.ReadAllText(path, MaxConfigBytes, (problem, inner) => new CheckpointException(path, "cannot read config.json: it " + problem, inner));

    // ---- the spec as the importer builds it ----

    internal sealed record MoeDraft(int Experts, int TopK, string PlacementKind, int[] Layers, string Routing, double CapacityFactor,
        double EvalCapacityFactor, int MinCapacity, bool Residual);
    internal sealed record VisionDraft(string Tower, int ImageSize, int PatchSize, int HiddenSize, int Layers, int Heads, int MlpSize,
        double NormEps, int SelectLayer, string SelectFeature, (int Experts, int TopK)? Moe, int[] Scales);
    internal sealed record SpecDraft(string Name, string DisplayName, string Description, string Family, int VocabSize, int TokenizerSize,
        int HiddenSize, int Layers, int Heads, int KvHeads, int FfnSize, string FfnKind, string Norm, double NormEps, double RopeTheta,
        double RotaryFraction, bool QkvBias, bool AttnOutBias, bool MlpBias, bool LmHeadBias, bool ParallelResidual, int MaxPositions,
        MoeDraft? Moe, VisionDraft? Vision, (int Experts, int TopK)? ProjectorMoe, string TokenizerKind, int? Bos, int[] Eos,
        string Template, string Layout);

    internal static SpecDraft Read(string configJson, string? path)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(configJson, new JsonDocumentOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow });
        }
        catch (JsonException e)
        {
            throw new CheckpointException(path, "config.json is not valid JSON: " + e.Message, e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new CheckpointException(path, "config.json is not a JSON object");
            try
            {
                return new ConfigReader(doc.RootElement, path).Build();
            }
            catch (InvalidOperationException e)
            {
                throw new CheckpointException(path, "config.json holds an invalid string: " + e.Message, e);
            }
        }
    }

    private sealed class ConfigReader(JsonElement root, string? path)
    {
        // Sane upper bounds on counts, checked before anything is sized by them (a config claiming 2^31 layers
        // must fail at once, not after allocating gigabytes); layers and experts match the spec parser's limits.
        private const int MaxLayers = 512, MaxExperts = 256, MaxHeads = 1024, MaxHiddenSize = 1 << 16, MaxFfnSize = 1 << 20,
            MaxVocabulary = 10_000_000, MaxPositions = 1 << 24, MaxScales = 16;

        private CheckpointException Fail(string problem) => new(path, problem);

        private void CheckBounds(params (string Key, int Value, int Max)[] counts)
        {
            foreach (var (key, value, max) in counts)
                if (value > max) throw Fail($"config.json '{key}' is {value}, more than the {max} any supported model has");
        }

        private JsonElement? Get(JsonElement obj, string key) =>
            obj.TryGetProperty(key, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

        private bool Has(string key) => Get(root, key) is not null;

        private int Int(string key, int? fallback = null, JsonElement? obj = null)
        {
            var v = Get(obj ?? root, key);
            if (v is null) return fallback ?? throw Fail($"config.json has no '{key}'");
            if (v.Value.ValueKind != JsonValueKind.Number || !v.Value.TryGetInt32(out int i)) throw Fail($"config.json '{key}' is not an integer");
            return i;
        }

        private double Double(string key, double fallback, JsonElement? obj = null)
        {
            var v = Get(obj ?? root, key);
            if (v is null) return fallback;
            if (v.Value.ValueKind != JsonValueKind.Number || !v.Value.TryGetDouble(out double d) || !double.IsFinite(d))
                throw Fail($"config.json '{key}' is not a finite number");
            return d;
        }

        private string? String(string key, JsonElement? obj = null)
        {
            var v = Get(obj ?? root, key);
            if (v is null) return null;
            if (v.Value.ValueKind != JsonValueKind.String) throw Fail($"config.json '{key}' is not a string");
            return v.Value.GetString();
        }

        private bool Bool(string key, bool fallback, JsonElement? obj = null)
        {
            var v = Get(obj ?? root, key);
            if (v is null) return fallback;
            return v.Value.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Fail($"config.json '{key}' is not true or false"),
            };
        }

        private int[]? Ints(string key, JsonElement? obj = null)
        {
            var v = Get(obj ?? root, key);
            if (v is null) return null;
            if (v.Value.ValueKind != JsonValueKind.Array) throw Fail($"config.json '{key}' is not an array");
            return v.Value.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int i) ? i : throw Fail($"config.json '{key}' holds a non-integer")).ToArray();
        }

        public SpecDraft Build()
        {
            string modelType = String("model_type") ?? throw Fail("config.json has no 'model_type'");
            bool cumo = Get(root, "mm_vision_tower") is not null && Get(root, "mm_image_tower") is null
                        || Get(root, "clip_smoe") is not null || Get(root, "mlp_smoe") is not null;
            string family = modelType switch
            {
                "moe_llava_stablelm" or "llava_stablelm" or "stablelm" or "stablelm_epoch" => "stablelm",
                "moe_llava_qwen" or "llava_qwen" or "qwen" => "qwen",
                "moe_llava_phi" or "llava_phi" or "phi" or "phi-msft" => "phi",
                "moe_llava_mistral" or "llava_mistral" or "mistral" => "mistral",
                "llava_mixtral" or "mixtral" => "mixtral",
                _ => throw Fail($"model_type '{modelType}' is not a MoE-LLaVA, LLaVA, CuMo or Mixtral model this importer knows " +
                                "(moe_llava_stablelm, moe_llava_qwen, moe_llava_phi, moe_llava_mistral, llava_*, llava_mistral, llava_mixtral, mixtral)"),
            };
            bool openChat = family == "mistral" && !cumo && modelType.StartsWith("moe_llava", StringComparison.Ordinal);

            // older configs (stablelm_epoch, phi-msft) spell some keys differently
            int hidden = Int("hidden_size", Has("n_embd") ? Int("n_embd") : null);
            int layers = Int("num_hidden_layers", Has("n_layer") ? Int("n_layer") : null);
            int heads = Int("num_attention_heads", Has("n_head") ? Int("n_head") : null);
            int kvHeads = family is "qwen" ? heads : Int("num_key_value_heads", heads);
            int vocab = Int("vocab_size");
            int ffn = Int("intermediate_size", family == "phi" ? Int("n_inner", 4 * hidden) : null); // phi-msft: n_inner, null = 4 H
            if (family == "qwen") ffn /= 2; // Qwen's config counts both w1 and w2
            foreach (var (what, value) in new[] { ("hidden_size", hidden), ("num_hidden_layers", layers), ("num_attention_heads", heads), ("vocab_size", vocab), ("intermediate_size", ffn) })
                if (value <= 0) throw Fail($"config.json '{what}' is {value}; it must be positive");
            CheckBounds(("hidden_size", hidden, MaxHiddenSize), ("num_hidden_layers", layers, MaxLayers), ("num_attention_heads", heads, MaxHeads),
                ("num_key_value_heads", kvHeads, MaxHeads), ("vocab_size", vocab, MaxVocabulary), ("intermediate_size", ffn, MaxFfnSize));
            if (kvHeads <= 0 || heads % kvHeads != 0) throw Fail($"num_key_value_heads {kvHeads} does not divide num_attention_heads {heads}");
            if (hidden % heads != 0) throw Fail($"hidden_size {hidden} is not a multiple of num_attention_heads {heads}");
            double normEps = family switch
            {
                "stablelm" => Double("layer_norm_eps", Double("norm_eps", 1e-5)),
                "qwen" => Double("layer_norm_epsilon", 1e-6),
                "phi" => Double("layer_norm_eps", Double("layer_norm_epsilon", 1e-5)),
                _ => Double("rms_norm_eps", 1e-5),
            };
            double ropeTheta = family == "qwen" ? Double("rotary_emb_base", 10000) : Double("rope_theta", family == "mixtral" ? 1e6 : 10000);
            double rotary = family switch
            {
                "stablelm" => Double("partial_rotary_factor", Double("rope_pct", 0.25)),
                "qwen" => Double("rotary_pct", 1.0),
                "phi" => Double("partial_rotary_factor", Has("rotary_dim") ? Int("rotary_dim") / (double)(hidden / heads) : 0.4),
                _ => 1.0,
            };
            int maxPositions = family == "qwen" ? Int("seq_length", Int("max_position_embeddings", 8192)) : Int("max_position_embeddings", Int("n_positions", 4096));

            var (tokenizerKind, bos, eos, tokenizerSize, template) = family switch
            {
                "stablelm" => ("arcade100k", (int?)null, new[] { 100257 }, 100289, "stablelm"),
                "qwen" => ("qwen", null, new[] { 151643 }, 151851, "qwen"),
                // Phi-2's tokenizer is GPT-2's BPE plus 38 whitespace added tokens (50257-50294) matched before BPE;
                // the plain gpt2 kind lacks them and splits runs of spaces differently from the reference.
                "phi" => ("phi2", null, new[] { 50256 }, 50295, "phi"),
                _ when openChat => ("openchat", 1, new[] { 32000 }, Math.Min(vocab, 32002), "openchat"),
                _ => ("sentencepiece", 1, new[] { 2 }, Math.Min(vocab, 32000), cumo ? "mistral_instruct_system" : "plain"),
            };

            CheckBounds(("max_position_embeddings", maxPositions, MaxPositions));
            var moe = ReadLlmMoe(family, layers);
            var vision = ReadVision(cumo);
            // Without mm_* keys the config is a plain LLM: a text-only spec. An instruction-tuned Mistral/Mixtral
            // (named so in _name_or_path or its folder) chats in its [INST] format rather than the plain one.
            if (vision is null && template == "plain" && (String("_name_or_path") + " " + path).Contains("instruct", StringComparison.OrdinalIgnoreCase))
                template = "mistral_instruct";
            (int, int)? projectorMoe = null;
            if (cumo && (String("mm_projector_type") == "smoe_mlp" || Bool("mlp_smoe", false)))
            {
                projectorMoe = (Int("num_experts", 4), Int("num_selected", 2));
                CheckBounds(("num_experts", projectorMoe.Value.Item1, MaxExperts), ("num_selected", projectorMoe.Value.Item2, MaxExperts));
            }

            string source = String("_name_or_path") ?? modelType;
            string name = ToIdentifier(source.Split('/', '\\').Last());
            return new SpecDraft(name, source.Split('/', '\\').Last(), $"Imported from the config.json of {source} (model_type {modelType}).",
                family, vocab, Math.Min(tokenizerSize, vocab), hidden, layers, heads, kvHeads, ffn,
                family switch { "qwen" => "qwen-swiglu", "phi" => "gelu-tanh", _ => "swiglu" },
                family is "stablelm" or "phi" ? "layernorm" : "rmsnorm", normEps, ropeTheta, rotary,
                family switch { "stablelm" => Bool("use_qkv_bias", true), "qwen" or "phi" => true, _ => false },
                family == "phi", family == "phi", false, family == "phi", maxPositions,
                moe, vision, projectorMoe, tokenizerKind, bos, eos, template, cumo ? "cumo" : "moe-llava");
        }

        private MoeDraft? ReadLlmMoe(string family, int layers)
        {
            if (family == "mixtral")
            {
                int experts = Int("num_local_experts", 8);
                CheckBounds(("num_local_experts", experts, MaxExperts), ("num_experts_per_tok", Int("num_experts_per_tok", 2), MaxExperts));
                return new MoeDraft(experts, Int("num_experts_per_tok", 2), "all", Enumerable.Range(0, layers).ToArray(), "mixtral", 1.0, 1.0, 0, false);
            }
            var block = Get(root, "moe");
            if (block is null || block.Value.ValueKind != JsonValueKind.Object || !Bool("moe_enable", false, block)) return null;
            var b = block.Value;
            int[] layerList = Ints("moe_layers_idx", b) ?? throw Fail("config.json 'moe' has no 'moe_layers_idx'");
            if (layerList.Length == 0 || layerList.Any(l => l < 0 || l >= layers) || layerList.Distinct().Count() != layerList.Length)
                throw Fail($"config.json moe_layers_idx [{string.Join(", ", layerList)}] is not a set of layers below {layers}");
            int[] expertCounts = Ints("num_experts", b) ?? new[] { Int("num_experts", 4, b) };
            if (expertCounts.Length > layers) throw Fail($"config.json 'moe.num_experts' lists {expertCounts.Length} counts for {layers} layers");
            CheckBounds(expertCounts.Select(c => ("moe.num_experts", c, MaxExperts)).Append(("moe.top_k_experts", Int("top_k_experts", 2, b), MaxExperts))
                .Append(("moe.min_capacity", Int("min_capacity", 0, b), MaxPositions)).ToArray());
            if (expertCounts.Distinct().Count() != 1)
                throw Fail($"config.json gives different expert counts per layer ({string.Join(", ", expertCounts)}); variants need one count");
            Array.Sort(layerList);
            string kind = layerList.Length == layers ? "all" : IsInterval(layerList, layers) ? "interval" : "list";
            return new MoeDraft(expertCounts[0], Int("top_k_experts", 2, b), kind, layerList, "deepspeed",
                Double("capacity_factor", 1.5, b), Double("eval_capacity_factor", 2.0, b), Int("min_capacity", 0, b), Bool("use_residual", false, b));
        }

        private VisionDraft? ReadVision(bool cumo)
        {
            string? tower = String("mm_image_tower") ?? String("mm_vision_tower") ?? String("image_tower");
            if (tower is null) return null;
            bool siglip = tower.Contains("siglip", StringComparison.OrdinalIgnoreCase);
            bool clip = tower.Contains("clip", StringComparison.OrdinalIgnoreCase);
            if (!siglip && !clip) throw Fail($"image tower '{tower}' is neither a CLIP nor a SigLIP model");
            int imageSize = tower.Contains("384", StringComparison.Ordinal) ? 384 : tower.Contains("224", StringComparison.Ordinal) ? 224 : 336;
            int mmHidden = Int("mm_hidden_size", siglip ? 1152 : 1024);
            (int, int)? moe = cumo && Bool("clip_smoe", false) ? (Int("num_experts", 4), Int("num_selected", 2)) : null;
            string feature = String("mm_vision_select_feature") ?? "patch";
            int[] scales = cumo ? Ints("scales") ?? new[] { 1 } : new[] { 1 };
            CheckBounds(("mm_hidden_size", mmHidden, MaxHiddenSize), ("num_experts", moe?.Item1 ?? 0, MaxExperts), ("num_selected", moe?.Item2 ?? 0, MaxExperts),
                ("scales (entries)", scales.Length, MaxScales));
            CheckBounds(scales.Select(sc => ("scales", sc, MaxScales)).ToArray());
            // Tower dimensions are not in the LLaVA config: they are those of the named public towers.
            return siglip
                ? new VisionDraft("siglip", imageSize, 14, mmHidden, 27, 16, 4304, 1e-6, Int("mm_vision_select_layer", -2), feature, moe, scales)
                : new VisionDraft("clip", imageSize, 14, mmHidden, 24, 16, 4096, 1e-5, Int("mm_vision_select_layer", -2), feature, moe, scales);
        }
    }

    /// <summary>start, start+step, ... up to the last layer: what the spec's "interval" placement expresses.</summary>
    private static bool IsInterval(int[] sorted, int layers)
    {
        if (sorted.Length < 2) return false;
        int step = sorted[1] - sorted[0];
        for (int i = 1; i < sorted.Length; i++) if (sorted[i] - sorted[i - 1] != step) return false;
        return sorted[^1] + step >= layers;
    }

    internal static bool IsIdentifier(string s) =>
        s.Length > 0 && (char.IsLetter(s[0]) || s[0] == '_') && s.All(c => char.IsLetterOrDigit(c) || c == '_');

    internal static string ToIdentifier(string text)
    {
        var sb = new StringBuilder();
        bool upper = true;
        foreach (char c in text)
        {
            if (char.IsAsciiLetterOrDigit(c))
            {
                sb.Append(upper ? char.ToUpperInvariant(c) : c);
                upper = false;
            }
            else upper = true;
        }
        if (sb.Length == 0 || char.IsDigit(sb[0])) sb.Insert(0, "Model");
        return sb.ToString();
    }

}
