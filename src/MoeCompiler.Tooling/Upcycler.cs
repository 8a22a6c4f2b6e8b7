using System.Globalization;
using MoeCompiler.Runtime.Tensors;

using MoeCompiler.Runtime.Checkpoints;

namespace MoeCompiler.Tooling;

public sealed class UpcycleOptions
{
    /// <summary>Seed of the router initialisation; the same seed gives the same routers, byte for byte.</summary>
    public ulong Seed { get; set; }
    public bool Overwrite { get; set; }
    public IReadOnlyDictionary<string, string>? Metadata { get; set; }
    /// <summary>When set, the output path is a folder receiving Hugging Face shards of at most this many bytes (plus the index).</summary>
    public long? MaxShardBytes { get; set; }
}

public sealed record UpcycleResult(IReadOnlyList<string> Files, int CopiedTensors, int ExpertTensors, int Routers, IReadOnlyList<string> UnusedDenseKeys);

/// <summary>
/// MoE-Tuning stage III initialisation ("sparse upcycling"): from a dense stage-II checkpoint, writes the MoE
/// checkpoint a variant's manifest asks for. In each MoE layer every expert is a copy of the dense FFN
/// (<c>P.mlp.X</c> → <c>P.mlp.deepspeed_moe.experts.deepspeed_experts.{e}.X</c>) and the router
/// <c>P.mlp.deepspeed_moe.gate.wg.weight</c> [E, H] is drawn fresh in fp32 like PyTorch's nn.Linear default
/// (kaiming_uniform with a = √5, i.e. U(−1/√H, 1/√H)) from a seeded generator. Every other tensor is copied.
/// Tensors are streamed from the mapped dense files; nothing is duplicated in memory.
/// </summary>
public static class Upcycler
{
    public const string RouterSuffix = ".mlp.deepspeed_moe.gate.wg.weight";
    public const string ExpertInfix = ".mlp.deepspeed_moe.experts.deepspeed_experts.";

    public static UpcycleResult Upcycle(CheckpointFolder dense, WeightManifest moeManifest, IReadOnlyList<int> moeLayers,
        string outputPath, UpcycleOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(dense);
        ArgumentNullException.ThrowIfNull(moeManifest);
        ArgumentNullException.ThrowIfNull(moeLayers);
        options ??= new UpcycleOptions();
        var problems = new List<BindingProblem>();
        var output = new List<KeyValuePair<string, Tensor>>();
        var usedDense = new HashSet<string>(StringComparer.Ordinal);
        var routerLayers = new HashSet<int>();
        int copied = 0, experts = 0, routers = 0;

        foreach (var entry in moeManifest.Entries)
        {
            string key = entry.Key;
            if (key.EndsWith(RouterSuffix, StringComparison.Ordinal))
            {
                int layer = LayerIndex(key[..^RouterSuffix.Length]);
                if (!moeLayers.Contains(layer))
                    problems.Add(new(BindingProblemKind.Unexpected, key, $"router of layer {layer}, which is not in the MoE layer list"));
                if (entry.Shape.Length != 2 || entry.Shape[1] <= 0)
                {
                    problems.Add(new(BindingProblemKind.WrongShape, key, $"a router must be [experts, hidden], manifest says {Tensor.FormatShape(entry.Shape)}"));
                    continue;
                }
                routerLayers.Add(layer);
                output.Add(new(key, InitialiseRouter(key, entry.Shape[0], entry.Shape[1], options.Seed)));
                routers++;
                continue;
            }
            string denseKey = key;
            int infix = key.IndexOf(ExpertInfix, StringComparison.Ordinal);
            if (infix >= 0)
            {
                string rest = key[(infix + ExpertInfix.Length)..];
                int dot = rest.IndexOf('.');
                if (dot <= 0 || !int.TryParse(rest[..dot], NumberStyles.None, CultureInfo.InvariantCulture, out _))
                {
                    problems.Add(new(BindingProblemKind.Unexpected, key, "expert key without an expert index"));
                    continue;
                }
                denseKey = key[..infix] + ".mlp." + rest[(dot + 1)..];
                experts++;
            }
            else copied++;
            if (!dense.TryGetInfo(denseKey, out var info))
            {
                problems.Add(new(BindingProblemKind.Missing, denseKey, $"needed for {key}"));
                continue;
            }
            if (!info.Shape.AsSpan().SequenceEqual(entry.Shape))
            {
                problems.Add(new(BindingProblemKind.WrongShape, denseKey, $"{key} needs {Tensor.FormatShape(entry.Shape)}, dense checkpoint has {info.ShapeText}"));
                continue;
            }
            if (info.DType is null)
            {
                problems.Add(new(BindingProblemKind.WrongDType, denseKey, $"dense checkpoint has {info.DTypeName}"));
                continue;
            }
            usedDense.Add(denseKey);
            output.Add(new(key, dense.GetTensor(denseKey)));
        }
        foreach (int layer in moeLayers)
            if (!routerLayers.Contains(layer))
                problems.Add(new(BindingProblemKind.Missing, $"layer {layer}{RouterSuffix}", "the MoE layer list names this layer but the manifest has no router for it"));
        if (problems.Count > 0) throw new CheckpointBindingException(dense.Path, moeManifest.Variant, problems);

        var unused = dense.Keys.Where(k => !usedDense.Contains(k)).ToList();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["format"] = "pt",
            ["moecompiler.upcycled_from"] = Path.GetFileName(dense.Path.TrimEnd('/', '\\')),
            ["moecompiler.router_seed"] = options.Seed.ToString(CultureInfo.InvariantCulture),
            ["moecompiler.moe_layers"] = string.Join(",", moeLayers),
        };
        if (options.Metadata is not null) foreach (var (k, v) in options.Metadata) metadata[k] = v;
        IReadOnlyList<string> files;
        if (options.MaxShardBytes is long maxShard)
            files = SafetensorsWriter.WriteSharded(outputPath, output, maxShard, metadata, options.Overwrite);
        else
        {
            SafetensorsWriter.Write(outputPath, output, metadata, options.Overwrite);
            files = new[] { Path.GetFullPath(outputPath) };
        }
        return new UpcycleResult(files, copied, experts, routers, unused);
    }

    private static int LayerIndex(string prefix)
    {
        int dot = prefix.LastIndexOf('.');
        return int.TryParse(prefix[(dot + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int layer) ? layer : -1;
    }

    /// <summary>U(−1/√fanIn, 1/√fanIn) in fp32, from a generator seeded by the seed and the key (order-independent).</summary>
    public static Tensor InitialiseRouter(string key, int experts, int fanIn, ulong seed)
    {
        var tensor = Tensor.Allocate(DType.F32, experts, fanIn);
        var values = tensor.AsFloats();
        double bound = 1.0 / Math.Sqrt(fanIn);
        ulong state = seed ^ Fnv1a(key);
        for (int i = 0; i < values.Length; i++)
        {
            double unit = (SplitMix64(ref state) >> 11) * (1.0 / (1UL << 53)); // [0, 1)
            values[i] = (float)((2 * unit - 1) * bound);
        }
        return new Tensor(tensor.Storage, 0, DType.F32, tensor.Shape, key);
    }

    private static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static ulong Fnv1a(string text)
    {
        ulong hash = 0xcbf29ce484222325UL;
        foreach (char c in text)
        {
            hash ^= c;
            hash *= 0x100000001b3UL;
        }
        return hash;
    }
}
