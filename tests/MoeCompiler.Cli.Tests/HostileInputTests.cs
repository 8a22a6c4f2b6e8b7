using MoeCompiler.Checkpoints.Tests;
using MoeCompiler.Models;

namespace MoeCompiler.Cli.Tests;

/// <summary>Bad files of every kind the hostile-input sweep of issue 17 used, made once for the class.</summary>
public sealed class BadFilesFixture : IDisposable
{
    public BadFilesFixture()
    {
        Root = Path.Combine(Path.GetTempPath(), "moe-cli-hostile-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Root);

        // TinyPhiChat's tensor names and shapes, all views at the end of one deflated storage far larger than they are
        HostileBinFolder = Folder("hostile-bin");
        var entries = ModelCatalog.Find("TinyPhiChat")!.Manifest.Entries;
        long viewElements = entries.Max(e => e.Shape.Aggregate(1L, (a, d) => a * d));
        long storageElements = Math.Max(16L << 20, 4 * entries.Sum(e => e.Shape.Aggregate(1L, (a, d) => a * d)));
        var tensors = entries.Select(e =>
        {
            long n = e.Shape.Aggregate(1L, (a, d) => a * d);
            var stride = new long[e.Shape.Length];
            long s = 1;
            for (int i = stride.Length - 1; i >= 0; i--) { stride[i] = s; s *= e.Shape[i]; }
            return new TorchZipWriter.TensorRef(e.Key, "0", storageElements, storageElements - n, e.Shape.Select(d => (long)d).ToArray(), stride);
        }).ToList();
        HostileBin = Path.Combine(HostileBinFolder, "pytorch_model.bin");
        HostileZip.Write(HostileBin,
        [
            new HostileZip.Entry("archive/data.pkl", TorchZipWriter.Pickle(tensors), 0, false) is var pkl ? pkl with { Size = pkl.Data.Length } : null!,
            new HostileZip.Entry("archive/data/0", HostileZip.DeflatedPrefixThenZeros([], storageElements * 4), storageElements * 4, true),
        ]);
        _ = viewElements;

        ZeroLink = Path.Combine(Root, "zero.png");
        File.CreateSymbolicLink(ZeroLink, "/dev/zero");
        FifoImage = MakeFifo(Path.Combine(Root, "fifo.png"));
        FifoSpec = MakeFifo(Path.Combine(Root, "spec.json"));

        HugeConfigFolder = Folder("huge-config");
        File.WriteAllText(Path.Combine(HugeConfigFolder, "config.json"),
            """{"model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": 2147483647, "num_attention_heads": 4, "vocab_size": 1000, "intermediate_size": 128}""");
        FifoConfigFolder = Folder("fifo-config");
        FifoConfig = MakeFifo(Path.Combine(FifoConfigFolder, "config.json"));

        RegularFile = Path.Combine(Root, "precious.txt");
        File.WriteAllText(RegularFile, "do not overwrite");
    }

    public string Root { get; }
    public string HostileBinFolder { get; }
    public string HostileBin { get; }
    public string ZeroLink { get; }
    public string FifoImage { get; }
    public string FifoSpec { get; }
    public string HugeConfigFolder { get; }
    public string FifoConfigFolder { get; }
    public string FifoConfig { get; }
    public string RegularFile { get; }

    private string Folder(string name)
    {
        string path = Path.Combine(Root, name);
        Directory.CreateDirectory(path);
        return path;
    }

    private static string MakeFifo(string path)
    {
        using var process = System.Diagnostics.Process.Start("mkfifo", [path]);
        process.WaitForExit();
        return path;
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

/// <summary>
/// Every command against bad files: each must end with exit 2 and one line that names the file (exit 1 is for bugs
/// in the tool only), never hang on a FIFO, never read a device, never overwrite a file.
/// </summary>
public sealed class HostileInputTests(TinyWeightsFixture weights, BadFilesFixture bad) : IClassFixture<TinyWeightsFixture>, IClassFixture<BadFilesFixture>
{
    public static TheoryData<string> Cases() =>
    [
        "run-hostile-bin", "run-zero-image", "run-fifo-image", "run-folder-image", "run-fifo-config",
        "chat-hostile-bin", "chat-fifo-image", "routing-hostile-bin", "routing-zero-image",
        "inspect-fifo-spec", "inspect-zero-spec", "import-config-huge-layers", "import-config-fifo", "import-config-dev-zero",
        "create-weights-out-is-a-file", "upcycle-hostile-dense", "upcycle-out-is-a-file", "bench-hostile-bin",
    ];

    private (string[] Args, string File) Case(string name)
    {
        string zeroSpec = Path.Combine(bad.Root, "zero-spec.json");
        if (name == "inspect-zero-spec" && !File.Exists(zeroSpec) && new FileInfo(zeroSpec).LinkTarget is null) File.CreateSymbolicLink(zeroSpec, "/dev/zero");
        string fifoConfigWeights = Path.Combine(bad.FifoConfigFolder, "model.safetensors");
        if (name == "run-fifo-config" && !File.Exists(fifoConfigWeights))
            File.Copy(Path.Combine(weights.PhiWeights, "model.safetensors"), fifoConfigWeights);
        string[] run = ["run", "TinyPhiChat", "-p", "x", "--max-tokens", "1"];
        return name switch
        {
            "run-hostile-bin" => ([.. run, "-w", bad.HostileBinFolder, "-i", weights.Picture], bad.HostileBin),
            "run-zero-image" => ([.. run, "-w", weights.PhiWeights, "-i", bad.ZeroLink], bad.ZeroLink),
            "run-fifo-image" => ([.. run, "-w", weights.PhiWeights, "-i", bad.FifoImage], bad.FifoImage),
            "run-folder-image" => ([.. run, "-w", weights.PhiWeights, "-i", bad.Root], bad.Root),
            "run-fifo-config" => ([.. run, "-w", bad.FifoConfigFolder, "-i", weights.Picture], bad.FifoConfig),
            "chat-hostile-bin" => (["chat", "TinyPhiChat", "-w", bad.HostileBinFolder, "--max-tokens", "1"], bad.HostileBin),
            "chat-fifo-image" => (["chat", "TinyPhiChat", "-w", weights.PhiWeights, "-i", bad.FifoImage, "--max-tokens", "1"], bad.FifoImage),
            "routing-hostile-bin" => (["routing", "TinyPhiChat", "-w", bad.HostileBinFolder, "-i", weights.Picture, "-o", Path.Combine(bad.Root, "r1")], bad.HostileBin),
            "routing-zero-image" => (["routing", "TinyPhiChat", "-w", weights.PhiWeights, "-i", bad.ZeroLink, "-o", Path.Combine(bad.Root, "r2")], bad.ZeroLink),
            "inspect-fifo-spec" => (["inspect", bad.FifoSpec], bad.FifoSpec),
            "inspect-zero-spec" => (["inspect", zeroSpec], zeroSpec),
            "import-config-huge-layers" => (["import-config", bad.HugeConfigFolder], Path.Combine(bad.HugeConfigFolder, "config.json")),
            "import-config-fifo" => (["import-config", bad.FifoConfigFolder], bad.FifoConfig),
            "import-config-dev-zero" => (["import-config", "/dev/zero"], "/dev/zero"),
            "create-weights-out-is-a-file" => (["create-weights", "TinyPhiChat", "-o", bad.RegularFile], bad.RegularFile),
            "upcycle-hostile-dense" => (["upcycle", "--dense", bad.HostileBinFolder, "--variant", "TinyStableLmMoe", "-o", Path.Combine(bad.Root, "up1")], bad.HostileBin),
            "upcycle-out-is-a-file" => (["upcycle", "--dense", weights.PhiWeights, "--variant", "TinyStableLmMoe", "-o", bad.RegularFile], bad.RegularFile),
            "bench-hostile-bin" => (["bench", "TinyPhiChat", "-w", bad.HostileBinFolder, "--tokens", "1", "--prompt-tokens", "4"], bad.HostileBin),
            _ => throw new ArgumentException(name),
        };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Bad_files_end_in_exit_2_with_one_line_naming_the_file(string name)
    {
        var (args, file) = Case(name);
        string precious = File.ReadAllText(bad.RegularFile);
        // a command blocked on a FIFO would never return: the guard turns that into a failure, not a hung run
        var result = await Task.Run(() => CliRunner.RunWithInput("", args)).WaitAsync(TimeSpan.FromMinutes(2));
        Assert.True(result.ExitCode == 2, $"{name}: exit {result.ExitCode}: {result.Error}");
        Assert.Contains(file, result.Error);
        Assert.Single(result.Error.Trim().Split('\n'));
        Assert.Equal(precious, File.ReadAllText(bad.RegularFile));
    }
}
