using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Generation;

/// <summary>
/// <see cref="IBackend.LinearRows"/>, what batched decode runs every linear layer with: each output row must be
/// bit-identical to <see cref="IBackend.Linear"/> on that row alone, for f32 and bf16 (packed or not) weights and any
/// row count, while <see cref="IBackend.Linear"/> itself switches to the blocked GEMM above four rows.
/// </summary>
public sealed class RowIndependentLinearTests
{
    public static TheoryData<DType, int, bool> Cases()
    {
        var data = new TheoryData<DType, int, bool>();
        foreach (var dtype in new[] { DType.F32, DType.BF16 })
            foreach (int rows in new[] { 2, 3, 4, 5, 7, 8, 13 })
                data.Add(dtype, rows, rows % 2 == 1);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryRow_EqualsTheRowAlone_Bitwise(DType dtype, int rows, bool withBias)
    {
        const int inFeatures = 544, outFeatures = 77; // 544: past the packed-bf16 block, not a multiple of the GEMM tiles
        var rng = new Random(rows * 31 + (int)dtype);
        var weightValues = Enumerable.Range(0, outFeatures * inFeatures).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        Tensor weight;
        if (dtype == DType.BF16)
        {
            weight = Tensor.Allocate(DType.BF16, outFeatures, inFeatures);
            var raw = weight.AsSpan<ushort>();
            for (int i = 0; i < weightValues.Length; i++) raw[i] = NumberFormats.FloatToBF16(weightValues[i]);
        }
        else weight = Tensor.FromFloats(weightValues, outFeatures, inFeatures);
        var bias = withBias ? Tensor.FromFloats(Enumerable.Range(0, outFeatures).Select(i => i * 0.01f).ToArray(), outFeatures) : null;
        var x = Tensor.FromFloats(Enumerable.Range(0, rows * inFeatures).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray(), rows, inFeatures);

        using var backend = new CpuBackend(threads: 2);
        var prepared = backend.PrepareLinearWeight(weight);
        if (dtype == DType.BF16 && backend.Isa == KernelIsa.Avx512)
            Assert.IsType<PackedWeightStorage>(prepared.Storage); // the multi-row packed kernel is what runs
        var batched = Tensor.Allocate(DType.F32, rows, outFeatures);
        backend.LinearRows(x, prepared, bias, batched);
        for (int r = 0; r < rows; r++)
        {
            var alone = Tensor.Allocate(DType.F32, 1, outFeatures);
            backend.Linear(x.SliceRows(r, 1), prepared, bias, alone);
            Assert.Equal(alone.AsFloats().ToArray(), batched.SliceRows(r, 1).AsFloats().ToArray());
        }

        // The default interface method (backends without their own) gives the same rows.
        var viaDefault = Tensor.Allocate(DType.F32, rows, outFeatures);
        ((IBackend)new DefaultRowsBackend(backend)).LinearRows(x, prepared, bias, viaDefault);
        Assert.Equal(batched.AsFloats().ToArray(), viaDefault.AsFloats().ToArray());
    }

    /// <summary>
    /// The packed-bf16 multi-row kernel on a weight wide enough to run in column chunks (4520 columns = 70 blocks of
    /// 64 + 40 tail columns, so 2 or more rows split each weight row into chunks whose accumulators are kept between
    /// them), 45 weight rows (not a multiple of the 8-row tiles), values outside each row's 15-entry high-byte table
    /// (the kernel's exceptions), and 1–8 rows (one or two groups of four, partial groups) plus 11 (two bands):
    /// every row is bit-identical to the one-row product, and all of them agree with a naive double-precision
    /// reference over the bf16 values.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(11)]
    public void PackedRows_InColumnChunks_EqualTheRowAlone_AndTheNaiveReference(int rows)
    {
        const int inFeatures = 70 * 64 + 40, outFeatures = 45;
        var rng = new Random(1000 + rows);
        var weight = Tensor.Allocate(DType.BF16, outFeatures, inFeatures);
        var raw = weight.AsSpan<ushort>();
        for (int i = 0; i < raw.Length; i++)
        {
            // Mostly values of a few binades; every 97th far outside them, so each row has exceptions.
            float value = i % 97 == 5 ? (float)(rng.NextDouble() - 0.5) * 3e4f : (float)(rng.NextDouble() - 0.5) * 0.1f;
            raw[i] = NumberFormats.FloatToBF16(value);
        }
        var bias = Tensor.FromFloats(Enumerable.Range(0, outFeatures).Select(i => 0.5f - i * 0.02f).ToArray(), outFeatures);
        var x = Tensor.FromFloats(Enumerable.Range(0, rows * inFeatures).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray(), rows, inFeatures);

        using var backend = new CpuBackend(threads: 2);
        var prepared = backend.PrepareLinearWeight(weight);
        if (backend.Isa == KernelIsa.Avx512)
        {
            var packed = Assert.IsType<PackedWeightStorage>(prepared.Storage).Packed;
            Assert.True(packed.Exceptions >= outFeatures, $"expected exceptions in every row, got {packed.Exceptions}");
            Assert.True(PackedBF16.RowsChunkBlocks(Math.Min(rows, 8)) < packed.Blocks || rows == 1, "the weight should run in column chunks");
        }
        var batched = Tensor.Allocate(DType.F32, rows, outFeatures);
        backend.LinearRows(x, prepared, bias, batched);

        var xs = x.AsFloats().ToArray();
        var ys = batched.AsFloats().ToArray();
        for (int r = 0; r < rows; r++)
        {
            var alone = Tensor.Allocate(DType.F32, 1, outFeatures);
            backend.Linear(x.SliceRows(r, 1), prepared, bias, alone);
            Assert.Equal(alone.AsFloats().ToArray(), batched.SliceRows(r, 1).AsFloats().ToArray());
            for (int j = 0; j < outFeatures; j++)
            {
                double sum = 0.5 - j * 0.02f, magnitude = Math.Abs(sum);
                for (int c = 0; c < inFeatures; c++)
                {
                    double term = (double)xs[r * inFeatures + c] * NumberFormats.BF16ToFloat(raw[j * inFeatures + c]);
                    sum += term;
                    magnitude += Math.Abs(term);
                }
                double got = ys[r * outFeatures + j];
                Assert.True(Math.Abs(got - sum) <= 1e-5 * magnitude + 1e-6, $"row {r}, output {j}: {got} vs reference {sum} (Σ|terms| {magnitude})");
            }
        }
    }

    /// <summary>Forwards Linear to the CPU backend and keeps IBackend's default LinearRows.</summary>
    private sealed class DefaultRowsBackend(CpuBackend inner) : ForwardingBackend(inner)
    {
        public override string Name => "default-rows";
        public override void Dispose() { }
    }
}
