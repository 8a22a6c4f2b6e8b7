using System.Diagnostics;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;

namespace ModelBench;

/// <summary>
/// The benchmark's random bf16 checkpoint in the variant's real key layout: one <c>model.safetensors</c> per
/// (variant, seed) in a cache folder, written once (streamed by <see cref="RandomCheckpoint"/>, never held in
/// memory: the full-size file is ~6.7 GB) and reused by later runs.
/// </summary>
public static class BenchCheckpoint
{
    public const string FileName = "model.safetensors";

    /// <summary>The folder holding the checkpoint for (manifest, seed) under <paramref name="cacheDirectory"/>;
    /// writes it first when absent. An existing file is reused as it is (binding checks keys and shapes).</summary>
    public static string Ensure(WeightManifest manifest, string cacheDirectory, ulong seed, TextWriter log, out TimeSpan? writeTime)
    {
        string folder = Path.GetFullPath(Path.Combine(cacheDirectory, $"{manifest.Variant}-bf16-seed{seed}"));
        string path = Path.Combine(folder, FileName);
        writeTime = null;
        if (File.Exists(path))
        {
            log.WriteLine($"reusing {path} ({new FileInfo(path).Length / 1e9:F2} GB)");
            return folder;
        }
        Directory.CreateDirectory(folder);
        RemoveStalePartials(folder);
        long bytes = 0;
        foreach (var e in manifest.Entries) bytes += e.ElementCount * 2;
        var drive = new DriveInfo(folder);
        if (drive.AvailableFreeSpace < bytes + (1L << 30))
            throw new IOException($"{folder}: writing the {bytes / 1e9:F1} GB checkpoint needs more free disk than the {drive.AvailableFreeSpace / 1e9:F1} GB available");
        log.WriteLine($"writing {path} ({bytes / 1e9:F2} GB, {manifest.Entries.Count} tensors, seed {seed}) ...");
        long start = Stopwatch.GetTimestamp();
        Write(manifest, path, seed);
        writeTime = Stopwatch.GetElapsedTime(start);
        log.WriteLine($"  written in {writeTime.Value.TotalSeconds:F1} s");
        return folder;
    }

    /// <summary>The quantised copy of the bf16 checkpoint in <paramref name="bf16Folder"/> (a sibling folder named by the
    /// type), written once by <see cref="CheckpointQuantizer"/> with its default policy and reused by later runs.</summary>
    public static string EnsureQuantized(WeightManifest manifest, string bf16Folder, QuantizationType type, TextWriter log, out TimeSpan? writeTime)
    {
        string folder = bf16Folder.Replace("-bf16-", "-" + WeightQuantizer.Name(type) + "-", StringComparison.Ordinal);
        writeTime = null;
        if (File.Exists(Path.Combine(folder, FileName)) || File.Exists(Path.Combine(folder, CheckpointFolder.SafetensorsIndexName)))
        {
            log.WriteLine($"reusing {folder}");
            return folder;
        }
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true); // an interrupted earlier write: this cache is ours
        log.WriteLine($"quantising to {WeightQuantizer.Name(type)} into {folder} ...");
        long start = Stopwatch.GetTimestamp();
        using (var source = CheckpointFolder.Open(bf16Folder))
        {
            var result = CheckpointQuantizer.Write(manifest, source, folder, new QuantizationOptions(type), progress: new TenthsProgress(log));
            log.WriteLine($"  {result.SourceBytes / 1e9:F2} GB → {result.WrittenBytes / 1e9:F2} GB in {result.Files.Count} file(s)");
        }
        writeTime = Stopwatch.GetElapsedTime(start);
        log.WriteLine($"  quantised in {writeTime.Value.TotalSeconds:F1} s");
        return folder;
    }

    /// <summary>One log line per tenth of the tensors, on the writing thread.</summary>
    private sealed class TenthsProgress(TextWriter log) : IProgress<BindProgress>
    {
        private int _lastTenth = -1;

        public void Report(BindProgress p)
        {
            int tenth = 10 * p.TensorsDone / Math.Max(1, p.TensorsTotal);
            if (tenth == _lastTenth) return;
            _lastTenth = tenth;
            log.WriteLine($"  {tenth * 10}% ({p.TensorsDone}/{p.TensorsTotal} tensors)");
        }
    }

    /// <summary>A killed run leaves the writer's temporary <c>.model.safetensors.*.partial</c> behind; the cache folder
    /// is this benchmark's own, so any such file is stale.</summary>
    private static void RemoveStalePartials(string folder)
    {
        foreach (string partial in Directory.EnumerateFiles(folder, "." + FileName + ".*.partial"))
            File.Delete(partial);
    }

    /// <summary>The runtime's seeded random weights (norm scales 1, shifts 0, the rest N(0, 0.02²)) as bf16,
    /// generated while they are written.</summary>
    public static void Write(WeightManifest manifest, string path, ulong seed) =>
        RandomCheckpoint.Write(manifest, path, seed, DType.BF16);
}
