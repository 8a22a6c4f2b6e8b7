using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

/// <summary>
/// CuMo's S2 multi-scale features (s2wrapper): for each scale s the normalised image is resized to s·S
/// (PyTorch bicubic; scale 1 is the image itself), cut into s×s row-major tiles of S pixels, each tile goes
/// through the same tower, the tiles' g×g patch grids are reassembled into an (s·g)×(s·g) grid and area-pooled
/// (s×s average) back to g×g. The scales' features are concatenated on channels in the order given.
/// </summary>
public static class MultiScaleVision
{
    /// <param name="pixels">Normalised image [3, imageSize, imageSize].</param>
    /// <param name="tower">Pixels [3, imageSize, imageSize] → patch features [g², C], g = imageSize / patchSize.</param>
    /// <returns>[g², C · scales.Length].</returns>
    public static Tensor EncodeS2(ForwardContext ctx, Tensor pixels, int imageSize, int patchSize, int[] scales,
        Func<Tensor, Tensor> tower)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        ArgumentNullException.ThrowIfNull(pixels);
        ArgumentNullException.ThrowIfNull(scales);
        ArgumentNullException.ThrowIfNull(tower);
        if (pixels.Rank != 3 || pixels.Dim(0) != 3 || pixels.Dim(1) != imageSize || pixels.Dim(2) != imageSize)
            throw new ArgumentException($"S2: expected pixels [3, {imageSize}, {imageSize}], got {pixels}");
        if (patchSize <= 0 || imageSize % patchSize != 0)
            throw new ArgumentException($"S2: image size {imageSize} is not a multiple of the patch size {patchSize}");
        if (scales.Length == 0) throw new ArgumentException("S2: no scales given");
        foreach (int s in scales)
            if (s <= 0) throw new ArgumentException($"S2: scale {s} must be a positive integer");

        var backend = ctx.Backend;
        int grid = imageSize / patchSize;
        int patches = grid * grid;
        Tensor? stacked = null;      // [scales·N, C]: scale i in rows [i·N, (i+1)·N)
        int channels = 0;

        for (int si = 0; si < scales.Length; si++)
        {
            int s = scales[si];
            Tensor features = s == 1 ? RunTower(tower, pixels, patches, ref channels) : EncodeScale(ctx, pixels, imageSize, grid, s, tower, ref channels);
            stacked ??= backend.Allocate(DType.F32, scales.Length * patches, channels);
            backend.CopyRows(features, 0, stacked, si * patches, patches);
            ModuleTensors.Release(features);
        }

        if (scales.Length == 1) return stacked!;
        // Interleave to [N, scales·C]: output row n·scales + i (as [N·scales, C]) is scale i of patch n.
        var order = new int[patches * scales.Length];
        for (int n = 0; n < patches; n++)
            for (int i = 0; i < scales.Length; i++)
                order[n * scales.Length + i] = i * patches + n;
        var result = backend.Allocate(DType.F32, patches * scales.Length, channels);
        backend.GatherRows(stacked!, order, result);
        ModuleTensors.Release(stacked);
        return result.Reshape(patches, scales.Length * channels);
    }

    private static Tensor RunTower(Func<Tensor, Tensor> tower, Tensor pixels, int patches, ref int channels)
    {
        var features = tower(pixels);
        if (features.Rank != 2 || features.Rows != patches || (channels != 0 && features.Columns != channels))
            throw new InvalidOperationException(
                $"S2: the tower returned {features}; expected [{patches}, {(channels == 0 ? "C" : channels.ToString(System.Globalization.CultureInfo.InvariantCulture))}]");
        channels = features.Columns;
        return features;
    }

    private static Tensor EncodeScale(ForwardContext ctx, Tensor pixels, int imageSize, int grid, int scale,
        Func<Tensor, Tensor> tower, ref int channels)
    {
        var backend = ctx.Backend;
        int big = imageSize * scale;
        var upsampled = backend.Allocate(DType.F32, 3, big, big);
        backend.UpsampleBicubic(pixels, big, big, upsampled);

        // View the upsampled image as rows of one tile's width: row (c·big + y)·scale + tx holds pixels
        // [tx·S, (tx+1)·S) of image row y in channel c, so a tile is one gather.
        var segments = upsampled.Reshape(3 * big * scale, imageSize);
        var tileRows = new int[3 * imageSize];
        var tile = backend.Allocate(DType.F32, 3, imageSize, imageSize);
        var tileView = tile.Reshape(3 * imageSize, imageSize);
        int bigGrid = grid * scale;
        Tensor? assembled = null;   // [(s·g)², C] channels-last grid
        for (int ty = 0; ty < scale; ty++)
        {
            for (int tx = 0; tx < scale; tx++)
            {
                for (int c = 0; c < 3; c++)
                    for (int y = 0; y < imageSize; y++)
                        tileRows[c * imageSize + y] = (c * big + ty * imageSize + y) * scale + tx;
                backend.GatherRows(segments, tileRows, tileView);
                var features = RunTower(tower, tile, grid * grid, ref channels);
                assembled ??= backend.Allocate(DType.F32, bigGrid * bigGrid, channels);
                for (int gy = 0; gy < grid; gy++)
                    backend.CopyRows(features, gy * grid, assembled, (ty * grid + gy) * bigGrid + tx * grid, grid);
                ModuleTensors.Release(features);
            }
        }
        ModuleTensors.Release(tile);
        ModuleTensors.Release(upsampled);
        var pooled = backend.Allocate(DType.F32, grid * grid, channels);
        backend.AvgPool2d(assembled!, bigGrid, bigGrid, scale, pooled);
        ModuleTensors.Release(assembled);
        return pooled;
    }
}
