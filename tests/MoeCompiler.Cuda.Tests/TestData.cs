using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda.Tests;

/// <summary>Deterministic inputs and tolerance checks shared by the parity tests.</summary>
internal static class TestData
{
    public static float[] Random(int count, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    /// <summary>A host tensor of <paramref name="dtype"/> holding <paramref name="values"/> rounded to that dtype.</summary>
    public static Tensor HostTensor(float[] values, DType dtype, params int[] shape)
    {
        var f32 = Tensor.FromFloats(values, shape);
        if (dtype == DType.F32) return f32;
        byte[] bytes = HostConversions.ConvertTo(f32, dtype);
        var storage = new ManagedStorage(bytes.Length);
        bytes.CopyTo(storage.Array, 0);
        return new Tensor(storage, 0, dtype, shape);
    }

    /// <summary>|expected − actual| ≤ atol + rtol·|expected| everywhere; the message names the worst element.</summary>
    public static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double atol, double rtol, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        double worst = 0;
        int worstAt = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs((double)expected[i] - actual[i]);
            if (double.IsNaN(actual[i]) && !double.IsNaN(expected[i])) error = double.PositiveInfinity;
            double excess = error - (atol + rtol * Math.Abs(expected[i]));
            if (excess > worst) { worst = excess; worstAt = i; }
        }
        Assert.True(worstAt < 0,
            worstAt < 0 ? "" : $"{what}: element {worstAt} is {actual[worstAt]}, expected {expected[worstAt]} (atol {atol}, rtol {rtol})");
    }

    public static float MaxAbs(ReadOnlySpan<float> values)
    {
        float m = 0;
        foreach (float v in values) m = Math.Max(m, Math.Abs(v));
        return m;
    }
}
