using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using Xunit;

namespace MoeCompiler.Runtime.Tests.Kernels;

internal static class KernelTestUtil
{
    /// <summary>Every instruction-set path this machine can run (the narrower ones are forced).</summary>
    public static IReadOnlyList<KernelIsa> Isas { get; } = Enum.GetValues<KernelIsa>().Where(KernelIsaSupport.IsSupported).ToArray();

    public static Tensor RandomF32(Random random, float range, params int[] shape)
    {
        var t = Tensor.Allocate(DType.F32, shape);
        var data = t.AsFloats();
        for (int i = 0; i < data.Length; i++) data[i] = (float)((random.NextDouble() * 2 - 1) * range);
        return t;
    }

    /// <summary>An output buffer full of NaN, so an element the kernel forgets to write fails the comparison.</summary>
    public static Tensor Poisoned(params int[] shape)
    {
        var t = Tensor.Allocate(DType.F32, shape);
        t.AsFloats().Fill(float.NaN);
        return t;
    }

    public static Tensor Copy(Tensor t)
    {
        var c = Tensor.Allocate(t.DType, t.Shape.ToArray());
        t.AsFloats().CopyTo(c.AsFloats());
        GC.KeepAlive(t); // a span does not keep its tensor's memory alive
        return c;
    }

    /// <summary>A weight [rows, columns] of the given dtype with random values in ±range.</summary>
    public static Tensor RandomWeight(Random random, DType dtype, int rows, int columns, float range = 1f, int groupSize = 0)
    {
        var f32 = RandomF32(random, range, rows, columns);
        switch (dtype)
        {
            case DType.F32: return f32;
            case DType.BF16:
                {
                    var t = Tensor.Allocate(DType.BF16, rows, columns);
                    var dst = t.AsSpan<ushort>();
                    var src = f32.AsFloats();
                    for (int i = 0; i < src.Length; i++) dst[i] = NumberFormats.FloatToBF16(src[i]);
                    GC.KeepAlive(f32); // a span does not keep its tensor's memory alive
                    return t;
                }
            case DType.F16:
                {
                    var t = Tensor.Allocate(DType.F16, rows, columns);
                    var dst = t.AsSpan<Half>();
                    var src = f32.AsFloats();
                    for (int i = 0; i < src.Length; i++) dst[i] = (Half)src[i];
                    GC.KeepAlive(f32); // a span does not keep its tensor's memory alive
                    return t;
                }
            case DType.I8: return Int8Quantization.Quantize(f32, groupSize);
            default: throw new ArgumentOutOfRangeException(nameof(dtype));
        }
    }

    /// <summary>|actual − expected| ≤ atol + rtol·|expected| for every element (NaN never passes).</summary>
    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double atol, double rtol, string what = "")
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (!(Math.Abs(a - e) <= atol + rtol * Math.Abs(e)))
                Assert.Fail($"{what} element {i}: expected {e:R}, got {a:R} (atol {atol}, rtol {rtol})");
        }
    }

    public static void AssertClose(ReadOnlySpan<float> expected, Tensor actual, double atol, double rtol, string what = "")
    {
        AssertClose(expected, actual.AsFloats(), atol, rtol, what);
        GC.KeepAlive(actual); // a span does not keep its tensor's memory alive
    }

    public static void AssertClose(Tensor expected, Tensor actual, double atol, double rtol, string what = "")
    {
        AssertClose(expected.AsFloats(), actual.AsFloats(), atol, rtol, what);
        GC.KeepAlive(expected);
        GC.KeepAlive(actual);
    }

    public static void AssertBitwiseEqual(Tensor expected, Tensor actual, string what = "")
    {
        var e = expected.AsFloats();
        var a = actual.AsFloats();
        Assert.Equal(e.Length, a.Length);
        for (int i = 0; i < e.Length; i++)
            if (BitConverter.SingleToInt32Bits(e[i]) != BitConverter.SingleToInt32Bits(a[i]))
                Assert.Fail($"{what} element {i}: {e[i]:R} vs {a[i]:R} differ between thread counts");
        GC.KeepAlive(expected);
        GC.KeepAlive(actual);
    }
}
