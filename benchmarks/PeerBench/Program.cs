using System.Diagnostics;
using System.Globalization;
using PeerBench;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

const string usage = """
    usage:
      PeerBench write-gguf --type bf16|q8_0|q4_0|q4_k --out FILE [--tiny] [--seed N]
          a random-weight qwen3moe GGUF with the bytes per decode token of MoeLlavaQwen4e (--tiny: a toy of the
          same structure for the self-test); never overwrites FILE
      PeerBench serve llama --gguf FILE --prompt-rows N --decode N [--threads N] [--seed N] [--verbose]
      PeerBench serve torch --text-tokens N --decode N [--threads N] [--seed N] [--tiny] [--no-vision] [--layers N]
          load, prefill, print {"event":"ready",...}; then "decode N" / "quit" on stdin (ModelBench's peer protocol)
    """;

try
{
    if (args.Length == 0 || args[0] is "-h" or "--help")
    {
        Console.WriteLine(usage);
        return args.Length == 0 ? 2 : 0;
    }
    var o = Options.Parse(args.Skip(args[0] == "serve" ? 2 : 1).ToArray());
    switch (args[0])
    {
        case "write-gguf":
            return WriteGguf(o);
        case "serve" when args.Length > 1 && args[1] == "llama":
            return LlamaPeer.Run(o.Required("--gguf"), o.Int("--prompt-rows", 608), o.Int("--decode", 32), o.Int("--threads", 2), o.Seed, o.Flag("--verbose"));
        case "serve" when args.Length > 1 && args[1] == "torch":
            return TorchPeer.Run(o.Int("--text-tokens", 32), o.Int("--decode", 32), o.Int("--threads", 2), o.Seed, o.Flag("--tiny"), !o.Flag("--no-vision"), o.Flag("--layers") ? o.Int("--layers", 24) : null);
        default:
            Console.Error.WriteLine("error: unknown command\n" + usage);
            return 2;
    }
}
catch (PeerException e)
{
    Console.Error.WriteLine("error: " + e.Message);
    return 2;
}
catch (IOException e)
{
    Console.Error.WriteLine("error: " + e.Message);
    return 2;
}

static int WriteGguf(Options o)
{
    string typeName = o.Required("--type");
    GgmlType type = typeName.ToLowerInvariant() switch
    {
        "bf16" => GgmlType.BF16, "q8_0" => GgmlType.Q8_0, "q4_0" => GgmlType.Q4_0, "q4_k" => GgmlType.Q4_K,
        _ => throw new PeerException($"--type takes bf16, q8_0, q4_0 or q4_k, got '{typeName}'"),
    };
    string path = Path.GetFullPath(o.Required("--out"));
    var shape = o.Flag("--tiny") ? Qwen3MoeShape.Tiny : Qwen3MoeShape.MoeLlavaQwen4eBytes;
    var writer = Qwen3MoeGguf.Build(shape, type, o.Seed);
    long bytes = writer.FileBytes();
    if (File.Exists(path)) throw new PeerException($"{path} exists; not overwriting it (delete it, or pick another --out)");
    string dir = Path.GetDirectoryName(path)!;
    Directory.CreateDirectory(dir);
    long free = new DriveInfo(dir).AvailableFreeSpace;
    if (free < bytes + (1L << 30))
        throw new PeerException($"{dir}: {free / 1e9:F1} GB free, the file needs {bytes / 1e9:F2} GB (+1 GB to spare)");
    Console.WriteLine($"writing {path}: qwen3moe {GgmlTypes.Name(type)}, {writer.Tensors.Count} tensors, {bytes / 1e9:F3} GB, " +
                      $"{Qwen3MoeGguf.DecodeBytesPerToken(writer, shape) / 1e9:F3} GB per decode token");
    var sw = Stopwatch.StartNew();
    long lastReport = 0;
    writer.Write(path, (done, total) =>
    {
        if (done - lastReport < (1L << 30) && done != total) return;
        lastReport = done;
        Console.WriteLine($"  {done / 1e9:F2} / {total / 1e9:F2} GB ({sw.Elapsed.TotalSeconds:F0} s)");
    });
    Console.WriteLine($"written in {sw.Elapsed.TotalSeconds:F1} s");
    return 0;
}

namespace PeerBench
{
    public sealed class PeerException(string message) : Exception(message);

    /// <summary>--name value pairs and bare flags.</summary>
    public sealed class Options
    {
        private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);

        public static Options Parse(string[] args)
        {
            var o = new Options();
            for (int i = 0; i < args.Length; i++)
            {
                if (!args[i].StartsWith("--", StringComparison.Ordinal)) throw new PeerException($"unexpected argument '{args[i]}'");
                bool hasValue = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal);
                o._values[args[i]] = hasValue ? args[++i] : null;
            }
            return o;
        }

        public bool Flag(string name) => _values.ContainsKey(name);

        public string Required(string name) =>
            _values.TryGetValue(name, out var v) && v is not null ? v : throw new PeerException($"{name} is required");

        public int Int(string name, int fallback)
        {
            if (!_values.TryGetValue(name, out var v)) return fallback;
            return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0 ? n
                : throw new PeerException($"{name} must be a positive integer, got '{v}'");
        }

        public ulong Seed => _values.TryGetValue("--seed", out var v)
            ? ulong.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong s) ? s : throw new PeerException("--seed must be a non-negative integer")
            : 1;
    }
}
