using System.Text;
using MoeCompiler.Runtime.Tensors;

using MoeCompiler.Runtime.Checkpoints;

namespace MoeCompiler.Tooling;

/// <summary>
/// Seeded random weights for a variant's manifest, written as a safetensors checkpoint: the weights the tools
/// create when no real checkpoint is at hand (the demo, tests, benchmarks). Each tensor draws from its own
/// stream derived from the seed and its key, so a tensor does not change when others are added or reordered.
/// Norm scales are 1 and norm shifts 0 (a freshly initialised network); everything else is N(0, 0.02²).
/// Tensors are generated while they are written, so full-size checkpoints need no memory beyond a chunk.
/// </summary>
public static class RandomCheckpoint
{
    public const float InitStd = 0.02f;

    /// <summary>
    /// Writes every manifest tensor to <paramref name="path"/>, generated chunk by chunk while writing (a full-size
    /// model never has to fit in memory); refuses to replace an existing file unless asked.
    /// </summary>
    public static void Write(WeightManifest manifest, string path, ulong seed, DType dtype = DType.F32, bool overwrite = false,
        IProgress<double>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        if (dtype is not (DType.F32 or DType.BF16 or DType.F16))
            throw new ArgumentException($"random checkpoints are written as F32, BF16 or F16, not {dtype}", nameof(dtype));
        var tensors = new List<StreamedTensor>(manifest.Entries.Count);
        for (int i = 0; i < manifest.Entries.Count; i++)
        {
            var entry = manifest.Entries[i];
            double done = (i + 1.0) / manifest.Entries.Count;
            tensors.Add(new StreamedTensor(entry.Key, dtype, entry.Shape, stream =>
            {
                WriteValues(entry, seed, dtype, stream);
                progress?.Report(done);
            }));
        }
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["moecompiler.variant"] = manifest.Variant,
            ["moecompiler.random_seed"] = seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        SafetensorsWriter.WriteStreamed(path, tensors, metadata, overwrite);
    }

    /// <summary>One tensor of the checkpoint <see cref="Write"/> makes, in memory: the same values.</summary>
    public static Tensor Create(WeightEntry entry, ulong seed, DType dtype)
    {
        var values = new float[entry.ElementCount];
        var source = new ValueSource(entry, seed);
        source.Fill(values);
        var f32 = Tensor.FromFloats(values, entry.Shape);
        return dtype == DType.F32 ? f32 : DTypeConversion.Convert(f32, dtype);
    }

    private static void WriteValues(WeightEntry entry, ulong seed, DType dtype, Stream stream)
    {
        const int Chunk = 1 << 16; // even: Gaussian pairs never straddle two chunks
        var source = new ValueSource(entry, seed);
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
    private struct ValueSource(WeightEntry entry, ulong seed)
    {
        private readonly bool _isNorm = entry.Role == WeightRole.Norm || IsNormKey(entry.Key);
        private readonly bool _isShift = entry.Key.EndsWith(".bias", StringComparison.Ordinal);
        private SplitMix64 _random = new(seed ^ Fnv1a(entry.Key));

        /// <summary>Next values; every call but the last must ask for an even count.</summary>
        public void Fill(Span<float> values)
        {
            if (_isNorm)
            {
                values.Fill(_isShift ? 0f : 1f);
                return;
            }
            for (int i = 0; i < values.Length; i += 2)
            {
                var (a, b) = _random.NextGaussianPair();
                values[i] = a * InitStd;
                if (i + 1 < values.Length) values[i + 1] = b * InitStd;
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
