using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Generation;

/// <summary>Seeded random weights for a variant's manifest (the same stream as <c>PipelineEndToEndTests</c>): norm
/// weights near 1, small biases, fan-in scaled matrices; matrices optionally stored as bf16.</summary>
internal static class TestWeights
{
    public static BoundWeights Random(WeightManifest manifest, ulong seed, DType matrixDType = DType.F32)
    {
        ulong state = seed;
        double Uniform()
        {
            ulong z = state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return ((z ^ (z >> 31)) >> 11) * (1.0 / (1UL << 53)) + 1e-300;
        }
        double Normal() => Math.Sqrt(-2 * Math.Log(Uniform())) * Math.Cos(2 * Math.PI * Uniform());

        var tensors = new Dictionary<string, Tensor>();
        foreach (var entry in manifest.Entries)
        {
            bool isBias = entry.Key.EndsWith(".bias", StringComparison.Ordinal);
            long fanIn = entry.Shape.Length >= 2 ? entry.Shape.Skip(1).Aggregate(1L, (a, b) => a * b) : 1;
            (double mean, double std) = entry.Role switch
            {
                WeightRole.Norm when !isBias => (1.0, 0.1),
                WeightRole.Embedding => (0.0, 1.0),
                _ when isBias || entry.Shape.Length < 2 => (0.0, 0.02),
                WeightRole.Router => (0.0, 2.0 / Math.Sqrt(fanIn)),
                _ => (0.0, 1.0 / Math.Sqrt(fanIn)),
            };
            var values = new float[entry.Shape.Aggregate(1, (a, b) => a * b)];
            for (int i = 0; i < values.Length; i++) values[i] = (float)(mean + std * Normal());
            if (matrixDType == DType.BF16 && entry.Shape.Length == 2)
            {
                var t = Tensor.Allocate(DType.BF16, entry.Shape);
                var raw = t.AsSpan<ushort>();
                for (int i = 0; i < values.Length; i++) raw[i] = NumberFormats.FloatToBF16(values[i]);
                tensors[entry.Key] = t;
            }
            else
            {
                tensors[entry.Key] = Tensor.FromFloats(values, entry.Shape);
            }
        }
        return BoundWeights.FromTensors(tensors);
    }

    /// <summary>Pseudo-random prompt ids in [0, limit) (no image placeholder).</summary>
    public static int[] Prompt(int length, int limit, int seed)
    {
        var rng = new System.Random(seed);
        var ids = new int[length];
        for (int i = 0; i < length; i++) ids[i] = rng.Next(limit);
        return ids;
    }
}
