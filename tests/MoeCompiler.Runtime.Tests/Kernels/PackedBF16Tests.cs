using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Runtime.Threading;
using MoeCompiler.TestSupport;
using Xunit;
using static MoeCompiler.Runtime.Tests.Kernels.KernelTestUtil;

namespace MoeCompiler.Runtime.Tests.Kernels;

/// <summary>
/// The lossless 12-bit packing of bf16 Linear weights (<see cref="PackedBF16"/>): every value comes back bit for bit,
/// products through it equal the plain bf16 kernel (bitwise for rows without exceptions), and the backend uses it only
/// for whole prepared weights.
/// </summary>
public sealed unsafe class PackedBF16Tests
{
    public enum Values
    {
        /// <summary>N(0, 0.02²) like an initialised checkpoint: few exceptions.</summary>
        Normal,
        /// <summary>Every bf16 bit pattern equally likely (NaN, ±inf, subnormals, ±0): mostly exceptions.</summary>
        AnyBits,
        /// <summary>Normal values with a few large outliers and exact zeros per row.</summary>
        Outliers,
        /// <summary>One value everywhere: a one-entry table, no exceptions.</summary>
        Constant,
    }

    private static ushort[] Make(Values kind, int rows, int columns, int seed)
    {
        var random = new Random(seed);
        var values = new ushort[rows * columns];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = kind switch
            {
                Values.Normal => NumberFormats.FloatToBF16(Gaussian(random) * 0.02f),
                Values.AnyBits => (ushort)random.Next(65536),
                Values.Outliers => random.Next(40) switch
                {
                    0 => NumberFormats.FloatToBF16(Gaussian(random) * 300f),
                    1 => (ushort)0,
                    2 => (ushort)0x8000,
                    _ => NumberFormats.FloatToBF16(Gaussian(random) * 0.02f),
                },
                _ => NumberFormats.FloatToBF16(-0.375f),
            };
        }
        return values;
    }

    private static float Gaussian(Random random) =>
        (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));

    public static TheoryData<Values, int, int> Shapes()
    {
        var data = new TheoryData<Values, int, int>();
        foreach (var kind in Enum.GetValues<Values>())
            foreach (var (rows, columns) in new[] { (1, 64), (7, 64), (33, 130), (70, 2048), (5, 5504), (3, 191) })
                data.Add(kind, rows, columns);
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void EveryValueComesBackExactly(Values kind, int rows, int columns)
    {
        var source = Make(kind, rows, columns, rows * 31 + columns);
        using var pool = new WorkerPool(2);
        fixed (ushort* s = source)
        {
            var packed = PackedBF16.Pack(pool, s, rows, columns);
            try
            {
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < columns; c++)
                        Assert.Equal(source[r * columns + c], packed.Get(r, c));
                // Decoded rows, whole and in ranges that start and end inside blocks, on every ISA path.
                var decoded = new float[columns];
                foreach (var isa in Isas)
                    foreach (var (start, count) in new[] { (0, columns), (1, columns - 1), (columns / 3, columns / 2), (columns - 1, 1) })
                        for (int r = 0; r < rows; r++)
                        {
                            fixed (float* d = decoded) packed.DecodeRow(r, start, count, d, isa);
                            for (int i = 0; i < count; i++)
                                Assert.Equal(BitConverter.SingleToInt32Bits(NumberFormats.BF16ToFloat(source[r * columns + start + i])),
                                    BitConverter.SingleToInt32Bits(decoded[i]));
                        }
                if (kind == Values.Constant) Assert.Equal(0, packed.Exceptions);
                if (kind == Values.AnyBits && columns >= 64) Assert.True(packed.Exceptions > 0);
            }
            finally
            {
                packed.Free();
            }
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void DotProductsMatchThePlainBf16Kernel(Values kind, int rows, int columns)
    {
        if (!KernelIsaSupport.IsSupported(KernelIsa.Avx512)) return; // the packed dot product is AVX-512 only
        var source = Make(kind, rows, columns, rows * 17 + columns);
        var random = new Random(columns);
        var x = new float[columns];
        for (int i = 0; i < columns; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
        using var pool = new WorkerPool(1);
        fixed (ushort* s = source)
        fixed (float* xp = x)
        {
            var packed = PackedBF16.Pack(pool, s, rows, columns);
            try
            {
                int rowsWithExceptions = 0;
                for (int r = 0; r < rows; r++)
                {
                    bool hasExceptions = packed.ExceptionColumns(r).Length > 0;
                    if (hasExceptions) rowsWithExceptions++;
                    float plain = Gemm.DotBF16(KernelIsa.Avx512, xp, s + (long)r * columns, columns);
                    float viaPacked = packed.Dot(xp, r);
                    if (!hasExceptions)
                    {
                        Assert.Equal(BitConverter.SingleToInt32Bits(plain), BitConverter.SingleToInt32Bits(viaPacked));
                        continue;
                    }
                    // Exceptions are added after the vector sum: the same products, another order. Against an f64 sum.
                    double exact = 0, magnitude = 0;
                    for (int c = 0; c < columns; c++)
                    {
                        double product = (double)x[c] * NumberFormats.BF16ToFloat(source[r * columns + c]);
                        exact += product;
                        magnitude += Math.Abs(product);
                    }
                    if (double.IsNaN(exact) || double.IsInfinity(magnitude)) Assert.True(float.IsNaN(viaPacked) || float.IsInfinity(viaPacked), $"row {r}: {viaPacked}");
                    else Assert.True(Math.Abs(viaPacked - exact) <= 1e-6 * magnitude + 1e-30, $"row {r}: {viaPacked} vs {exact}");
                }
                if (kind == Values.Normal) Assert.True(rowsWithExceptions <= rows / 2, $"{rowsWithExceptions} of {rows} rows of normal weights have exceptions");
            }
            finally
            {
                packed.Free();
            }
        }
    }

    /// <summary>bf16 weights ±(1 + m)·2^−e, e in 1..6: six high bytes per sign at most, so no exceptions.</summary>
    private static Tensor FewBinades(Random random, int rows, int columns)
    {
        var t = Tensor.Allocate(DType.BF16, rows, columns);
        var values = t.AsSpan<ushort>();
        for (int i = 0; i < values.Length; i++)
            values[i] = NumberFormats.FloatToBF16((random.Next(2) * 2 - 1) * (1 + (float)random.NextDouble()) * MathF.Pow(2, -random.Next(1, 7)));
        return t;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(9)]
    public void BackendLinearOverPackedWeightsMatchesUnpacked(int m)
    {
        if (!KernelIsaSupport.IsSupported(KernelIsa.Avx512)) return;
        var random = new Random(m);
        var weight = FewBinades(random, 300, 704);
        var bias = RandomF32(random, 1f, 300);
        var x = RandomF32(random, 1f, m, 704);
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var plainBackend = new CpuBackend(threads, KernelIsa.Avx512) { PackBF16Weights = false };
            using var packedBackend = new CpuBackend(threads, KernelIsa.Avx512);
            var plainWeight = plainBackend.PrepareLinearWeight(weight);
            var packedWeight = packedBackend.PrepareLinearWeight(weight);
            Assert.Same(weight.Storage, plainWeight.Storage);
            Assert.NotSame(weight.Storage, packedWeight.Storage);
            Assert.Equal(weight.AsSpan<ushort>().ToArray(), packedWeight.AsSpan<ushort>().ToArray()); // still reads as bf16
            Assert.Equal(new PackingTotals(0, 0, 0, 0), plainBackend.Packing);
            Assert.Equal(1, packedBackend.Packing.Weights);
            Assert.Equal(0, packedBackend.Packing.Exceptions);
            Assert.InRange(packedBackend.Packing.Ratio, 0.75, 0.77); // 12 bits per value plus a 16-byte table per row
            var expected = Poisoned(m, 300);
            var actual = Poisoned(m, 300);
            plainBackend.Linear(x, plainWeight, bias, expected);
            packedBackend.Linear(x, packedWeight, bias, actual);
            // Few-row products take the packed dot product (bitwise equal to the plain one for rows without
            // exceptions, and these weights have none); the blocked product decodes rows exactly, so it is equal too.
            AssertBitwiseEqual(expected, actual, $"m={m} threads={threads}");
        }
    }

    [Fact]
    public void SlicesOfAPackedWeightReadTheOriginalValues()
    {
        if (!KernelIsaSupport.IsSupported(KernelIsa.Avx512)) return;
        var random = new Random(5);
        var weight = RandomWeight(random, DType.BF16, 40, 128, range: 0.1f);
        var x = RandomF32(random, 1f, 1, 128);
        using var backend = new CpuBackend(2, KernelIsa.Avx512);
        var packed = backend.PrepareLinearWeight(weight);
        var slice = packed.SliceRows(8, 16);
        var expected = Poisoned(1, 16);
        var actual = Poisoned(1, 16);
        ReferenceKernels.Linear(x, weight.SliceRows(8, 16), null, expected);
        backend.Linear(x, slice, null, actual);
        AssertClose(expected, actual, atol: 1e-5, rtol: 1e-5, "slice of a packed weight");
    }

    [Fact]
    public void PackedCopyIsFreedWithTheOriginal()
    {
        if (!KernelIsaSupport.IsSupported(KernelIsa.Avx512)) return;
        var weight = RandomWeight(new Random(9), DType.BF16, 16, 64);
        using var backend = new CpuBackend(1, KernelIsa.Avx512);
        var packed = backend.PrepareLinearWeight(weight);
        Assert.False(packed.Storage.IsDisposed);
        weight.Storage.Dispose();
        Assert.True(packed.Storage.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => backend.Linear(Tensor.Allocate(DType.F32, 1, 64), packed, null, Tensor.Allocate(DType.F32, 1, 16)));
    }

    [Fact]
    public void OnlyBf16MatricesArePacked()
    {
        using var backend = new CpuBackend(1);
        var random = new Random(3);
        // Arbitrary bit patterns would be mostly exceptions: the backend keeps such a weight unpacked.
        var noise = Tensor.Allocate(DType.BF16, 8, 64);
        foreach (ref ushort v in noise.AsSpan<ushort>()) v = (ushort)random.Next(65536);
        Assert.Same(noise.Storage, backend.PrepareLinearWeight(noise).Storage);
        Assert.Equal(0, backend.Packing.Weights);
        foreach (var weight in new[] { RandomWeight(random, DType.F32, 8, 64), RandomWeight(random, DType.BF16, 8, 63), RandomWeight(random, DType.I8, 8, 64) })
            Assert.Same(weight.Storage, backend.PrepareLinearWeight(weight).Storage);
    }
}

public sealed class MappedWeightPackingTests : IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"moe-packed-{Guid.NewGuid():N}.bin");

    public void Dispose()
    {
        if (File.Exists(_path)) File.Delete(_path);
    }

    /// <summary>Packing a weight that lives in a mapped file drops the file's pages from this process; the tensor must
    /// still read the same values (they come back from the page cache), and the file must be untouched.</summary>
    [Fact]
    public void MappedWeightStillReadsTheFileAfterPacking()
    {
        const int rows = 96, columns = 1024;
        var random = new Random(11);
        var bytes = new byte[4096 + rows * columns * 2];
        random.NextBytes(bytes);
        for (int i = 0; i < rows * columns; i++)
            BitConverter.TryWriteBytes(bytes.AsSpan(4096 + 2 * i), NumberFormats.FloatToBF16((float)(random.NextDouble() - 0.5) * MathF.Pow(2, -random.Next(12))));
        File.WriteAllBytes(_path, bytes);
        using var storage = MappedFileStorage.Open(_path);
        var weight = new Tensor(storage, 4096, DType.BF16, [rows, columns]);
        var before = weight.AsSpan<ushort>().ToArray();
        using var backend = new CpuBackend(2);
        var prepared = backend.PrepareLinearWeight(weight);
        Assert.Equal(before, weight.AsSpan<ushort>().ToArray());
        Assert.Equal(before, prepared.AsSpan<ushort>().ToArray());
        Assert.Equal(bytes, File.ReadAllBytes(_path));
        var x = KernelTestUtil.RandomF32(random, 1f, 1, columns);
        var expected = KernelTestUtil.Poisoned(1, rows);
        var actual = KernelTestUtil.Poisoned(1, rows);
        ReferenceKernels.Linear(x, weight, null, expected);
        backend.Linear(x, prepared, null, actual);
        KernelTestUtil.AssertClose(expected, actual, atol: 1e-5, rtol: 1e-5, "Linear over a packed mapped weight");
    }
}
