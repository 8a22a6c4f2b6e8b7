namespace MoeCompiler.Runtime.Kernels;

/// <summary>
/// PyTorch's bicubic taps along one axis (align_corners=false, A = −0.75, no antialias), computed in f32 as
/// PyTorch does: source = (in/out)·(d + ½) − ½, taps floor(source)−1 … +2 clamped to [0, in−1].
/// </summary>
internal sealed class BicubicTaps
{
    public required int[] Index { get; init; }
    public required float[] Weight { get; init; }

    public static BicubicTaps Compute(int inSize, int outSize)
    {
        const float a = -0.75f;
        var index = new int[outSize * 4];
        var weight = new float[outSize * 4];
        float scale = (float)inSize / outSize;
        for (int d = 0; d < outSize; d++)
        {
            float source = scale * (d + 0.5f) - 0.5f;
            float floor = MathF.Floor(source);
            float t = source - floor;
            weight[d * 4 + 0] = Far(t + 1f);
            weight[d * 4 + 1] = Near(t);
            weight[d * 4 + 2] = Near(1f - t);
            weight[d * 4 + 3] = Far(2f - t);
            for (int j = 0; j < 4; j++) index[d * 4 + j] = Math.Clamp((int)floor - 1 + j, 0, inSize - 1);
        }
        return new BicubicTaps { Index = index, Weight = weight };

        static float Near(float x) => ((a + 2) * x - (a + 3)) * x * x + 1;
        static float Far(float x) => ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    }
}
