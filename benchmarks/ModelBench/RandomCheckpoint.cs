using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using MoeCompiler.Runtime.Checkpoints;

namespace ModelBench;

/// <summary>
/// A random bf16 checkpoint in the variant's real key layout, streamed to one <c>model.safetensors</c> without
/// ever holding more than a chunk in memory (the full-size file is ~6.7 GB). Values are deterministic in the seed
/// and the key; scales keep activations sane through all layers: norm weights 1, everything else uniform with
/// standard deviation 0.02 (the usual initialiser), biases included.
/// </summary>
public static class RandomCheckpoint
{
    public const string FileName = "model.safetensors";
    private const float Std = 0.02f;

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

    /// <summary>A killed run leaves <c>model.safetensors.partial-PID</c>; remove those whose writer is gone.</summary>
    private static void RemoveStalePartials(string folder)
    {
        if (!Directory.Exists("/proc/self")) return; // liveness is only checkable through /proc
        foreach (string partial in Directory.EnumerateFiles(folder, FileName + ".partial-*"))
        {
            string pid = partial[(partial.LastIndexOf('-') + 1)..];
            if (int.TryParse(pid, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id)
                && !Directory.Exists("/proc/" + pid) && id != Environment.ProcessId)
                File.Delete(partial);
        }
    }

    public static void Write(WeightManifest manifest, string path, ulong seed)
    {
        byte[] header = Header(manifest, seed);
        string temporary = path + ".partial-" + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> length = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
                stream.Write(length);
                stream.Write(header);
                var chunk = new ushort[1 << 20];
                foreach (var entry in manifest.Entries)
                {
                    var kind = KindOf(entry);
                    ulong state = seed ^ Fnv1a(entry.Key);
                    for (long done = 0; done < entry.ElementCount; done += chunk.Length)
                    {
                        int n = (int)Math.Min(chunk.Length, entry.ElementCount - done);
                        Fill(chunk.AsSpan(0, n), kind, ref state);
                        stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(chunk.AsSpan(0, n)));
                    }
                }
            }
            File.Move(temporary, path, overwrite: false);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    private enum ValueKind { One, Uniform }

    /// <summary>Rank-1 ".weight" tensors are the norms' scales (LayerNorm, RMSNorm) in every layout we bench.</summary>
    private static ValueKind KindOf(WeightEntry entry) =>
        entry.Shape.Length == 1 && entry.Key.EndsWith(".weight", StringComparison.Ordinal) ? ValueKind.One : ValueKind.Uniform;

    private static void Fill(Span<ushort> values, ValueKind kind, ref ulong state)
    {
        if (kind == ValueKind.One)
        {
            values.Fill(0x3F80); // bf16 1.0
            return;
        }
        // Uniform on [-a, a] with a = √3·std; 16 random bits per value are plenty for a benchmark.
        float a = Std * MathF.Sqrt(3f);
        float step = 2f * a / 65536f;
        int i = 0;
        for (; i + 4 <= values.Length; i += 4)
        {
            ulong r = SplitMix64(ref state);
            values[i] = ToBFloat16(-a + step * (ushort)r);
            values[i + 1] = ToBFloat16(-a + step * (ushort)(r >> 16));
            values[i + 2] = ToBFloat16(-a + step * (ushort)(r >> 32));
            values[i + 3] = ToBFloat16(-a + step * (ushort)(r >> 48));
        }
        for (; i < values.Length; i++) values[i] = ToBFloat16(-a + step * (ushort)SplitMix64(ref state));
    }

    private static ushort ToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16); // round to nearest even (values are finite)
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
        ulong h = 0xCBF29CE484222325UL;
        foreach (char c in text) h = (h ^ c) * 0x100000001B3UL;
        return h;
    }

    private static byte[] Header(WeightManifest manifest, ulong seed)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            json.WriteString("format", "pt");
            json.WriteString("generator", "ModelBench random bf16, uniform std 0.02, norms 1");
            json.WriteString("seed", seed.ToString(System.Globalization.CultureInfo.InvariantCulture));
            json.WriteString("variant", manifest.Variant);
            json.WriteEndObject();
            long offset = 0;
            foreach (var entry in manifest.Entries)
            {
                json.WriteStartObject(entry.Key);
                json.WriteString("dtype", "BF16");
                json.WriteStartArray("shape");
                foreach (int d in entry.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + entry.ElementCount * 2);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += entry.ElementCount * 2;
            }
            json.WriteEndObject();
        }
        int unpadded = (int)buffer.Length;
        int padded = (8 + unpadded + 7) / 8 * 8 - 8;
        var header = new byte[padded];
        buffer.GetBuffer().AsSpan(0, unpadded).CopyTo(header);
        header.AsSpan(unpadded).Fill((byte)' ');
        return header;
    }
}
