using System.Text;
using System.Text.RegularExpressions;
using MoeCompiler.Runtime.Tensors;

using MoeCompiler.Runtime.Checkpoints;

namespace MoeCompiler.Tooling;

/// <summary>
/// Seeded random weights for a variant's manifest, written as a safetensors checkpoint: the weights the tools
/// create when no real checkpoint is at hand (the demo, tests, benchmarks). Each tensor draws from its own
/// stream derived from the seed and its key, so a tensor does not change when others are added or reordered.
/// <see cref="InitStyle.Default"/>: norm scales are 1 and norm shifts 0 (a freshly initialised network); everything
/// else, biases included, is N(0, 0.02²). <see cref="InitStyle.HuggingFace"/> follows the families' own
/// <c>_init_weights</c> instead (see there). Tensors are generated while they are written, so full-size checkpoints
/// need no memory beyond a chunk.
/// </summary>
public static class RandomCheckpoint
{
    public const float InitStd = 0.02f;

    /// <summary>The key of the checkpoint metadata naming the init (absent for <see cref="InitStyle.Default"/>).</summary>
    public const string InitMetadataKey = "moecompiler.init";

    /// <summary>
    /// Writes every manifest tensor to <paramref name="path"/>, generated chunk by chunk while writing (a full-size
    /// model never has to fit in memory); refuses to replace an existing file unless asked.
    /// </summary>
    public static void Write(WeightManifest manifest, string path, ulong seed, DType dtype = DType.F32, bool overwrite = false,
        IProgress<double>? progress = null, InitStyle init = InitStyle.Default)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        if (dtype is not (DType.F32 or DType.BF16 or DType.F16))
            throw new ArgumentException($"random checkpoints are written as F32, BF16 or F16, not {dtype}", nameof(dtype));
        var depths = Depths.Of(manifest);
        var tensors = new List<StreamedTensor>(manifest.Entries.Count);
        for (int i = 0; i < manifest.Entries.Count; i++)
        {
            var entry = manifest.Entries[i];
            double done = (i + 1.0) / manifest.Entries.Count;
            var rule = RuleFor(entry, init, depths);
            tensors.Add(new StreamedTensor(entry.Key, dtype, entry.Shape, stream =>
            {
                WriteValues(entry, seed, rule, dtype, stream);
                progress?.Report(done);
            }));
        }
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["moecompiler.variant"] = manifest.Variant,
            ["moecompiler.random_seed"] = seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        if (init == InitStyle.HuggingFace) metadata[InitMetadataKey] = "huggingface";
        SafetensorsWriter.WriteStreamed(path, tensors, metadata, overwrite);
    }

    /// <summary>One tensor of the checkpoint <see cref="Write"/> makes with <see cref="InitStyle.Default"/>, in memory:
    /// the same values.</summary>
    public static Tensor Create(WeightEntry entry, ulong seed, DType dtype)
    {
        ArgumentNullException.ThrowIfNull(entry);
        return Create(entry, seed, dtype, RuleFor(entry, InitStyle.Default, default));
    }

    /// <summary>One tensor of the checkpoint <see cref="Write"/> makes for <paramref name="manifest"/> with
    /// <paramref name="init"/>, in memory: the same values (the manifest gives the depths some rules scale by).</summary>
    public static Tensor Create(WeightManifest manifest, WeightEntry entry, ulong seed, DType dtype, InitStyle init)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(entry);
        return Create(entry, seed, dtype, RuleFor(entry, init, Depths.Of(manifest)));
    }

    /// <summary>The standard deviation <paramref name="init"/> draws <paramref name="entry"/> with (0 for a tensor
    /// that is constant), and the constant otherwise: what the tests check the values against.</summary>
    public static (double Std, float Constant) Distribution(WeightManifest manifest, WeightEntry entry, InitStyle init)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(entry);
        var rule = RuleFor(entry, init, Depths.Of(manifest));
        return (rule.Std, rule.Constant);
    }

    private static Tensor Create(WeightEntry entry, ulong seed, DType dtype, Rule rule)
    {
        var values = new float[entry.ElementCount];
        var source = new ValueSource(entry, seed, rule);
        source.Fill(values);
        var f32 = Tensor.FromFloats(values, entry.Shape);
        return dtype == DType.F32 ? f32 : DTypeConversion.Convert(f32, dtype);
    }

    /// <summary>How one tensor is drawn: N(0, Std²), or every value <see cref="Constant"/> when Std is 0.</summary>
    private readonly record struct Rule(double Std, float Constant);

    /// <summary>Layer counts some Hugging Face inits scale by, read from the manifest's keys.</summary>
    private readonly record struct Depths(int LlmLayers, int TowerLayers, bool ClipTower)
    {
        private static readonly Regex LlmLayer = new(@"(?:^|\.)(?:h|layers)\.(\d+)\.", RegexOptions.CultureInvariant);
        private static readonly Regex TowerLayer = new(@"\.encoder\.layers\.(\d+)\.", RegexOptions.CultureInvariant);

        public static Depths Of(WeightManifest manifest)
        {
            int llm = 0, tower = 0;
            bool clip = false;
            foreach (var entry in manifest.Entries)
            {
                if (entry.Role == WeightRole.Vision)
                {
                    if (TowerLayer.Match(entry.Key) is { Success: true } t) tower = Math.Max(tower, int.Parse(t.Groups[1].ValueSpan, provider: System.Globalization.CultureInfo.InvariantCulture) + 1);
                    clip |= entry.Key.EndsWith("class_embedding", StringComparison.Ordinal);
                }
                else if (entry.Role != WeightRole.Projector && LlmLayer.Match(entry.Key) is { Success: true } m)
                    llm = Math.Max(llm, int.Parse(m.Groups[1].ValueSpan, provider: System.Globalization.CultureInfo.InvariantCulture) + 1);
            }
            return new Depths(Math.Max(1, llm), Math.Max(1, tower), clip);
        }
    }

    private static Rule RuleFor(WeightEntry entry, InitStyle init, Depths depths)
    {
        string key = entry.Key;
        bool isNorm = entry.Role == WeightRole.Norm || IsNormKey(key);
        bool isBias = key.EndsWith(".bias", StringComparison.Ordinal);
        if (isNorm) return new Rule(0, isBias ? 0f : 1f);
        if (init == InitStyle.Default) return new Rule(InitStd, 0);
        // Hugging Face's _init_weights: every nn.Linear bias is zeroed (CLIP's, SigLIP's attention, and the LLM families').
        if (isBias) return new Rule(0, 0f);
        if (entry.Role == WeightRole.Vision) return depths.ClipTower ? ClipRule(entry, depths) : SiglipRule(entry);
        // Qwen (modeling_qwen.py, QWenPreTrainedModel._init_weights): every parameter named c_proj.weight (attention
        // output, MLP and expert down projections) is redrawn with std initializer_range / sqrt(2 * num_hidden_layers),
        // GPT-2's residual scaling. StableLM, Phi, Mistral/Mixtral and OpenChat (transformers' _init_weights) draw every
        // Linear and Embedding weight N(0, initializer_range²) with no depth scaling; so does the projector.
        if (entry.Role != WeightRole.Projector && key.EndsWith(".c_proj.weight", StringComparison.Ordinal))
            return new Rule(InitStd / Math.Sqrt(2.0 * depths.LlmLayers), 0);
        return new Rule(InitStd, 0);
    }

    /// <summary>transformers' CLIPPreTrainedModel._init_weights (initializer_factor 1): q/k/v_proj std
    /// d^-1/2 · (2L)^-1/2, out_proj d^-1/2, fc1 (2d)^-1/2, fc2 d^-1/2 · (2L)^-1/2, class embedding d^-1/2, patch and
    /// position embeddings initializer_range (0.02); d = the tower's width, L = its layers (those the manifest holds:
    /// a tower cut at its select layer counts fewer than the config's num_hidden_layers).</summary>
    private static Rule ClipRule(WeightEntry entry, Depths depths)
    {
        string key = entry.Key;
        double layers = 2.0 * depths.TowerLayers;
        if (key.EndsWith("class_embedding", StringComparison.Ordinal)) return new Rule(1 / Math.Sqrt(entry.Shape[^1]), 0);
        if (entry.Shape.Length != 2) return new Rule(InitStd, 0); // patch embedding
        int rows = entry.Shape[0], columns = entry.Shape[1];
        if (key.EndsWith("q_proj.weight", StringComparison.Ordinal) || key.EndsWith("k_proj.weight", StringComparison.Ordinal) ||
            key.EndsWith("v_proj.weight", StringComparison.Ordinal))
            return new Rule(1 / Math.Sqrt(columns) / Math.Sqrt(layers), 0);
        if (key.EndsWith("out_proj.weight", StringComparison.Ordinal)) return new Rule(1 / Math.Sqrt(columns), 0);
        if (key.EndsWith("fc1.weight", StringComparison.Ordinal)) return new Rule(1 / Math.Sqrt(2.0 * columns), 0);
        if (key.EndsWith("fc2.weight", StringComparison.Ordinal)) return new Rule(1 / Math.Sqrt(rows) / Math.Sqrt(layers), 0);
        return new Rule(InitStd, 0); // position embedding, anything else
    }

    /// <summary>transformers' SiglipPreTrainedModel._init_weights, with Gaussians of the same variance where it draws
    /// uniform or truncated values: attention and MLP weights Xavier (variance 2 / (fan_in + fan_out)), the patch
    /// convolution LeCun normal (variance 1 / fan_in), the position embedding std 1/sqrt(width); biases 0 (its MLP
    /// biases are N(0, 1e-12), zero for any purpose here).</summary>
    private static Rule SiglipRule(WeightEntry entry)
    {
        if (entry.Key.Contains("position_embedding", StringComparison.Ordinal)) return new Rule(1 / Math.Sqrt(entry.Shape[^1]), 0);
        if (entry.Shape.Length == 4) return new Rule(1 / Math.Sqrt((double)entry.Shape[1] * entry.Shape[2] * entry.Shape[3]), 0);
        if (entry.Shape.Length == 2) return new Rule(Math.Sqrt(2.0 / (entry.Shape[0] + entry.Shape[1])), 0);
        return new Rule(InitStd, 0);
    }

    private static void WriteValues(WeightEntry entry, ulong seed, Rule rule, DType dtype, Stream stream)
    {
        const int Chunk = 1 << 16; // even: Gaussian pairs never straddle two chunks
        var source = new ValueSource(entry, seed, rule);
        var values = new float[Chunk];
        var halves = dtype == DType.F32 ? null : new ushort[Chunk];
        for (long done = 0; done < entry.ElementCount; done += Chunk)
        {
            var chunk = values.AsSpan(0, (int)Math.Min(Chunk, entry.ElementCount - done));
            source.Fill(chunk);
            switch (dtype)
            {
                case DType.F32:
                    stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(chunk));
                    break;
                case DType.BF16:
                    MoeCompiler.Runtime.Kernels.Narrow.F32ToBF16(chunk, halves);
                    stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(halves.AsSpan(0, chunk.Length)));
                    break;
                case DType.F16:
                    var f16 = System.Runtime.InteropServices.MemoryMarshal.Cast<ushort, Half>(halves.AsSpan(0, chunk.Length));
                    System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(chunk, f16);
                    stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(f16));
                    break;
            }
        }
    }

    /// <summary>The values of one tensor, in order, whatever the chunking.</summary>
    private struct ValueSource(WeightEntry entry, ulong seed, Rule rule)
    {
        private readonly float _std = (float)rule.Std;
        private SplitMix64 _random = new(seed ^ Fnv1a(entry.Key));

        /// <summary>Next values; every call but the last must ask for an even count.</summary>
        public void Fill(Span<float> values)
        {
            if (_std == 0)
            {
                values.Fill(rule.Constant);
                return;
            }
            for (int i = 0; i < values.Length; i += 2)
            {
                var (a, b) = _random.NextGaussianPair();
                values[i] = a * _std;
                if (i + 1 < values.Length) values[i + 1] = b * _std;
            }
        }
    }

    private static bool IsNormKey(string key) =>
        key.Contains("norm", StringComparison.OrdinalIgnoreCase) || key.Contains(".ln_", StringComparison.Ordinal) ||
        key.Contains("layrnorm", StringComparison.Ordinal);

    private static ulong Fnv1a(string key)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in Encoding.UTF8.GetBytes(key))
        {
            hash ^= b;
            hash *= 1099511628211UL;
        }
        return hash;
    }

    private struct SplitMix64(ulong state)
    {
        private ulong _state = state;

        private ulong Next()
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        /// <summary>Uniform in (0, 1]: never 0, so the logarithm below is finite.</summary>
        private double NextUnit() => ((Next() >> 11) + 1) * (1.0 / (1UL << 53));

        public (float, float) NextGaussianPair()
        {
            // Box–Muller.
            double r = Math.Sqrt(-2.0 * Math.Log(NextUnit()));
            double theta = 2.0 * Math.PI * NextUnit();
            return ((float)(r * Math.Cos(theta)), (float)(r * Math.Sin(theta)));
        }
    }
}

/// <summary>How <see cref="RandomCheckpoint"/> draws the weights.</summary>
public enum InitStyle
{
    /// <summary>Every weight and bias N(0, 0.02²), norm scales 1 and shifts 0: the init of the benchmarks' and tests'
    /// random checkpoints (goldens and recorded numbers depend on it).</summary>
    Default,

    /// <summary>What the families' Hugging Face <c>_init_weights</c> draws: biases 0, norms 1 and 0, Linear and
    /// Embedding weights N(0, 0.02²) except Qwen's <c>c_proj.weight</c> (attention output, MLP and expert down
    /// projections) at std 0.02 / sqrt(2 · layers), and the vision tower by CLIP's (or SigLIP's) own rules.</summary>
    HuggingFace,
}
