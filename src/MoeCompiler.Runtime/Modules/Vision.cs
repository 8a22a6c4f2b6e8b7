using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

internal static class PatchGrid
{
    /// <summary>Checks pixels [3, S, S] against the patch size and position table; returns patches per side.</summary>
    public static int Check(Tensor pixels, int patchSize, int positions, int extraPositions, string tower)
    {
        if (pixels.Rank != 3 || pixels.Dim(0) != 3 || pixels.Dim(1) != pixels.Dim(2))
            throw new ArgumentException($"{tower} embeddings: expected pixels [3, S, S], got {pixels}");
        int size = pixels.Dim(1);
        if (size % patchSize != 0)
            throw new ArgumentException($"{tower} embeddings: image size {size} is not a multiple of the patch size {patchSize}");
        int side = size / patchSize;
        if (side * side + extraPositions != positions)
            throw new ArgumentException(
                $"{tower} embeddings: a {size}-pixel image gives {side * side} patches, the position table has {positions} rows" +
                (extraPositions > 0 ? $" (including {extraPositions} for the class token)" : ""));
        return side;
    }

    public static void CheckPatchWeight(Tensor weight, int patchSize, string tower)
    {
        if (weight.Rank != 4 || weight.Dim(1) != 3 || weight.Dim(2) != patchSize || weight.Dim(3) != patchSize)
            throw new ArgumentException($"{tower} patch embedding weight {weight} should be [C, 3, {patchSize}, {patchSize}]");
    }
}

/// <summary>
/// CLIP: patch convolution without bias, the class embedding prepended, position embeddings added → [1 + N, C].
/// The tower's <c>pre_layrnorm</c> is a separate <see cref="LayerNorm"/> applied by the caller.
/// </summary>
public sealed class ClipVisionEmbeddings
{
    public ClipVisionEmbeddings(IBackend backend, Tensor patchWeight, Tensor classEmbedding, Tensor positionEmbedding, int patchSize)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (patchSize <= 0) throw new ArgumentOutOfRangeException(nameof(patchSize), patchSize, "patch size must be positive");
        PatchGrid.CheckPatchWeight(patchWeight, patchSize, "CLIP");
        Width = patchWeight.Dim(0);
        if (classEmbedding.Length != Width)
            throw new ArgumentException($"CLIP class embedding {classEmbedding} should hold {Width} values");
        if (positionEmbedding.Rank != 2 || positionEmbedding.Dim(1) != Width)
            throw new ArgumentException($"CLIP position embedding {positionEmbedding} should be [positions, {Width}]");
        PatchSize = patchSize;
        PatchWeight = backend.PrepareWeight(patchWeight);
        ClassEmbedding = ModuleTensors.PrepareF32(backend, classEmbedding.Reshape(1, Width));
        PositionEmbedding = ModuleTensors.PrepareF32(backend, positionEmbedding);
    }

    public int Width { get; }
    public int PatchSize { get; }
    public Tensor PatchWeight { get; }
    public Tensor ClassEmbedding { get; }
    public Tensor PositionEmbedding { get; }

    public Tensor Forward(ForwardContext ctx, Tensor pixels)
    {
        var backend = ctx.Backend;
        int side = PatchGrid.Check(pixels, PatchSize, PositionEmbedding.Dim(0), 1, "CLIP");
        int patches = side * side;
        var y = backend.Allocate(DType.F32, patches + 1, Width);
        backend.PatchEmbed(pixels, PatchWeight, null, PatchSize, y.SliceRows(1, patches));
        backend.CopyRows(ClassEmbedding, 0, y, 0, 1);
        backend.Add(y, PositionEmbedding, y);
        return y;
    }
}

/// <summary>SigLIP: patch convolution with bias plus position embeddings, no class token → [N, C].</summary>
public sealed class SiglipVisionEmbeddings
{
    public SiglipVisionEmbeddings(IBackend backend, Tensor patchWeight, Tensor patchBias, Tensor positionEmbedding, int patchSize)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (patchSize <= 0) throw new ArgumentOutOfRangeException(nameof(patchSize), patchSize, "patch size must be positive");
        PatchGrid.CheckPatchWeight(patchWeight, patchSize, "SigLIP");
        Width = patchWeight.Dim(0);
        if (patchBias.Rank != 1 || patchBias.Dim(0) != Width)
            throw new ArgumentException($"SigLIP patch bias {patchBias} should be [{Width}]");
        if (positionEmbedding.Rank != 2 || positionEmbedding.Dim(1) != Width)
            throw new ArgumentException($"SigLIP position embedding {positionEmbedding} should be [positions, {Width}]");
        PatchSize = patchSize;
        PatchWeight = backend.PrepareWeight(patchWeight);
        PatchBias = ModuleTensors.PrepareF32(backend, patchBias);
        PositionEmbedding = ModuleTensors.PrepareF32(backend, positionEmbedding);
    }

    public int Width { get; }
    public int PatchSize { get; }
    public Tensor PatchWeight { get; }
    public Tensor PatchBias { get; }
    public Tensor PositionEmbedding { get; }

    public Tensor Forward(ForwardContext ctx, Tensor pixels)
    {
        var backend = ctx.Backend;
        int side = PatchGrid.Check(pixels, PatchSize, PositionEmbedding.Dim(0), 0, "SigLIP");
        var y = backend.Allocate(DType.F32, side * side, Width);
        backend.PatchEmbed(pixels, PatchWeight, PatchBias, PatchSize, y);
        backend.Add(y, PositionEmbedding, y);
        return y;
    }
}

/// <summary>Pre-LN transformer encoder layer: x + attn(norm1 x), then + mlp(norm2 ·). Returns a new tensor.</summary>
public sealed class VisionEncoderLayer<TFeedForward> where TFeedForward : IFeedForward
{
    public VisionEncoderLayer(LayerNorm norm1, EncoderSelfAttention attention, LayerNorm norm2, TFeedForward mlp)
    {
        ArgumentNullException.ThrowIfNull(norm1);
        ArgumentNullException.ThrowIfNull(attention);
        ArgumentNullException.ThrowIfNull(norm2);
        ArgumentNullException.ThrowIfNull(mlp);
        Norm1 = norm1;
        Attention = attention;
        Norm2 = norm2;
        Mlp = mlp;
    }

    public LayerNorm Norm1 { get; }
    public EncoderSelfAttention Attention { get; }
    public LayerNorm Norm2 { get; }
    public TFeedForward Mlp { get; }

    public Tensor Forward(ForwardContext ctx, Tensor x)
    {
        var backend = ctx.Backend;
        var normed = Norm1.Forward(ctx, x);
        var h = Attention.Forward(ctx, normed);
        ModuleTensors.Release(normed);
        backend.Add(x, h, h);                  // h = x + attn
        normed = Norm2.Forward(ctx, h);
        var m = Mlp.Forward(ctx, normed);
        ModuleTensors.Release(normed);
        backend.Add(h, m, h);                  // h = h + mlp
        ModuleTensors.Release(m);
        return h;
    }
}
