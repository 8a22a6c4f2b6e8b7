using System.Globalization;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Tooling;
using Xunit.Abstractions;

namespace MoeCompiler.Checkpoints.Tests;

/// <summary>
/// Binds a multi-GB generated checkpoint and reports resident memory from /proc/self/status. Slow (writes
/// several GB to the temp folder): runs only with MOE_SLOW_TESTS=1; MOE_MEMORY_TEST_GB sets the size (default 3).
/// </summary>
public class MemoryTests(ITestOutputHelper output)
{
    private static Dictionary<string, long> Status()
    {
        var result = new Dictionary<string, long>();
        foreach (var line in File.ReadAllLines("/proc/self/status"))
        {
            var parts = line.Split(':', 2);
            if (parts.Length == 2 && parts[1].TrimEnd().EndsWith(" kB", StringComparison.Ordinal))
                result[parts[0]] = long.Parse(parts[1].Trim()[..^3].Trim(), CultureInfo.InvariantCulture) / 1024; // MiB
        }
        return result;
    }

    private string Report(string stage)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var s = Status();
        string line = $"{stage}: VmRSS {s["VmRSS"]} MiB (anon {s.GetValueOrDefault("RssAnon")}, file {s.GetValueOrDefault("RssFile")}), " +
                      $"managed heap {GC.GetTotalMemory(true) >> 20} MiB";
        output.WriteLine(line);
        Console.WriteLine(line);
        return line;
    }

    [SlowFact]
    public void Binding_a_multi_gigabyte_checkpoint_stays_out_of_the_managed_heap()
    {
        int gigabytes = int.TryParse(Environment.GetEnvironmentVariable("MOE_MEMORY_TEST_GB"), out int g) ? g : 3;
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        const int Rows = 8192, Columns = 8192; // 256 MiB of f32 per tensor
        int tensors = gigabytes * 4;
        var entries = new List<WeightEntry>();
        using (var block = new NativeStorage((long)Rows * Columns * 4))
        {
            var source = new Tensor(block, 0, DType.F32, new[] { Rows, Columns });
            var span = source.AsFloats();
            for (int i = 0; i < span.Length; i++) span[i] = i % 977 * 0.001f;
            var keys = Enumerable.Range(0, tensors).Select(i => $"model.layers.{i}.mlp.up_proj.weight").ToList();
            SafetensorsWriter.Write(path, keys.Select(k => KeyValuePair.Create(k, source)));
            entries.AddRange(keys.Select(k => new WeightEntry(k, new[] { Rows, Columns }, WeightRole.FeedForward)));
        }
        output.WriteLine($"checkpoint: {new FileInfo(path).Length >> 20} MiB, {tensors} tensors");
        Report("before open");
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        long anonBefore = Status()["RssAnon"];

        using var folder = CheckpointFolder.Open(path);
        using var bound = WeightBinder.Bind(new WeightManifest("Big", entries, Array.Empty<string>()), folder);
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        Report("after bind");
        Assert.Equal(0, bound.CopiedBytes);
        Assert.Equal((long)tensors * Rows * Columns * 4, bound.MappedBytes);
        Assert.True(allocated < 16L << 20, $"binding allocated {allocated >> 20} MiB of managed memory");
        Assert.True(Status()["RssAnon"] - anonBefore < 64, "binding grew anonymous resident memory by more than 64 MiB");

        // Reading every weight pages the file in as shared file-backed memory, not anonymous copies.
        double checksum = 0;
        foreach (var e in entries)
        {
            var t = bound[e.Key].AsFloats();
            for (int i = 0; i < t.Length; i += 1024) checksum += t[i];
        }
        Report("after reading every page");
        Assert.True(checksum > 0);
        Assert.True(Status()["RssAnon"] - anonBefore < 64, "reading mapped weights grew anonymous resident memory");
        output.WriteLine($"managed bytes allocated by bind: {allocated / 1024} KiB");
    }
}
