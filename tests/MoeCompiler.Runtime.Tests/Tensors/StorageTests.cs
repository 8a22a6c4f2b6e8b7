using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.TestSupport;
using Xunit;
using static MoeCompiler.Runtime.Tests.Kernels.KernelTestUtil;

namespace MoeCompiler.Runtime.Tests.Tensors;

public sealed class StorageTests
{
    [Fact]
    public void MappedFileTensorsWorkInPlace()
    {
        string path = Path.Combine(Path.GetTempPath(), $"moe-mapped-{Guid.NewGuid():N}.bin");
        try
        {
            var random = new Random(1);
            var weight = RandomWeight(random, DType.BF16, 33, 70);
            var header = new byte[13]; // an odd offset, like a safetensors header
            using (var file = File.Create(path))
            {
                file.Write(header);
                file.Write(weight.AsSpan<ushort>().ToArray().SelectMany(BitConverter.GetBytes).ToArray());
            }
            using var storage = MappedFileStorage.Open(path);
            Assert.True(storage.IsReadOnly);
            Assert.Equal(13 + 33 * 70 * 2, storage.ByteLength);
            var mapped = new Tensor(storage, 13, DType.BF16, [33, 70], "mapped");
            Assert.Equal(weight.ToFloatArray(), mapped.ToFloatArray());

            var x = RandomF32(random, 1f, 3, 70);
            var expected = Poisoned(3, 33);
            var actual = Poisoned(3, 33);
            ReferenceKernels.Linear(x, weight, null, expected);
            using var backend = new CpuBackend(2);
            backend.Linear(x, backend.PrepareWeight(mapped), null, actual);
            AssertClose(expected, actual, 1e-5, 1e-5);
            var readOnly = new Tensor(storage, 0, DType.F32, [1, 4]);
            var e = Assert.Throws<ArgumentException>(() => backend.Rotary(readOnly, 1, 4, 4, 1e4f, 0));
            Assert.Contains("read-only", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void MappedRegionOutsideFileIsRejected()
    {
        string path = Path.Combine(Path.GetTempPath(), $"moe-mapped-{Guid.NewGuid():N}.bin");
        try
        {
            File.WriteAllBytes(path, new byte[10]);
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => MappedFileStorage.Open(path, 4, 7));
            Assert.Contains(path, e.Message);
            using var region = MappedFileStorage.Open(path, 4, 6);
            Assert.Equal(6, region.ByteLength);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(16)]
    public void Int8QuantizationRoundTripsWithinHalfAStep(int groupSize)
    {
        var random = new Random(groupSize);
        var weight = RandomF32(random, 3f, 9, 64);
        var quantized = Int8Quantization.Quantize(weight, groupSize);
        Assert.Equal(DType.I8, quantized.DType);
        Assert.Equal(groupSize == 0 ? 9 : 9 * 4, quantized.Scales!.Length);
        var restored = quantized.ToFloatArray();
        var original = weight.AsFloats();
        var scales = quantized.Scales.AsFloats();
        for (int i = 0; i < original.Length; i++)
        {
            int row = i / 64, column = i % 64;
            float scale = groupSize == 0 ? scales[row] : scales[row * 4 + column / groupSize];
            Assert.True(Math.Abs(restored[i] - original[i]) <= scale * 0.5f + 1e-6f, $"element {i}");
        }
        GC.KeepAlive(weight); // a span does not keep its tensor's memory alive
        // Slicing rows keeps the matching scales.
        var slice = quantized.SliceRows(3, 2);
        Assert.Equal(restored.AsSpan(3 * 64, 2 * 64).ToArray(), slice.ToFloatArray());
    }
}
