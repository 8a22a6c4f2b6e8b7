using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

/// <summary>
/// Heads and KV heads (grouped-query when fewer), head width, how many leading dims of each head are rotated
/// (rotate-half RoPE; 0 = none) and the RoPE base.
/// </summary>
public readonly record struct AttentionGeometry(int Heads, int KvHeads, int HeadDim, int RotaryDims, float RopeTheta)
{
    public int QueryWidth => Heads * HeadDim;
    public int KvWidth => KvHeads * HeadDim;

    /// <summary>
    /// Rotated dims per head as the reference computes them, <c>int(headDim · fraction)</c>
    /// (StableLM-2: 64 · 0.25 = 16; Phi-2: 80 · 0.4 = 32; 1.0 elsewhere).
    /// </summary>
    public static int RotaryDimsFromFraction(int headDim, double fraction)
    {
        if (!(fraction >= 0 && fraction <= 1))
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "the rotary fraction must be within [0, 1]");
        int dims = (int)(headDim * fraction);
        if (dims % 2 != 0)
            throw new ArgumentException($"rotary fraction {fraction} of a {headDim}-dim head gives an odd {dims} dims");
        return dims;
    }

    public void Validate()
    {
        if (Heads <= 0 || KvHeads <= 0 || HeadDim <= 0)
            throw new ArgumentException($"attention geometry {this}: heads, kv heads and head dim must be positive");
        if (Heads % KvHeads != 0)
            throw new ArgumentException($"attention geometry {this}: heads must be a multiple of kv heads");
        if (RotaryDims < 0 || RotaryDims > HeadDim || RotaryDims % 2 != 0)
            throw new ArgumentException($"attention geometry {this}: rotary dims must be even and within the head");
        if (RotaryDims > 0 && !(RopeTheta > 0))
            throw new ArgumentException($"attention geometry {this}: RoPE theta must be positive");
    }
}

/// <summary>
/// Decoder self-attention with RoPE and a KV cache. Rows of x sit at positions ctx.StartPosition + t; their keys
/// and values are written to ctx.Cache rows [StartPosition, StartPosition + T) of layer <see cref="LayerIndex"/>
/// and every query attends causally over the cache prefix (scale 1/√headDim). The caller (the generated model's
/// Forward) advances <see cref="KvCache.Length"/> once all layers have run. Without a cache the call attends
/// causally over its own rows only.
/// </summary>
public sealed class CausalSelfAttention
{
    public CausalSelfAttention(Linear q, Linear k, Linear v, Linear output, AttentionGeometry geometry, int layerIndex)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(output);
        geometry.Validate();
        if (q.OutFeatures != geometry.QueryWidth)
            throw new ArgumentException($"layer {layerIndex}: q projection gives {q.OutFeatures} features, geometry needs {geometry.QueryWidth}");
        if (k.OutFeatures != geometry.KvWidth || v.OutFeatures != geometry.KvWidth)
            throw new ArgumentException($"layer {layerIndex}: k/v projections give {k.OutFeatures}/{v.OutFeatures} features, geometry needs {geometry.KvWidth}");
        if (k.InFeatures != q.InFeatures || v.InFeatures != q.InFeatures)
            throw new ArgumentException($"layer {layerIndex}: q/k/v projections disagree on the input width");
        if (output.InFeatures != geometry.QueryWidth)
            throw new ArgumentException($"layer {layerIndex}: output projection takes {output.InFeatures} features, attention gives {geometry.QueryWidth}");
        if (layerIndex < 0) throw new ArgumentOutOfRangeException(nameof(layerIndex));
        Q = q;
        K = k;
        V = v;
        Output = output;
        Geometry = geometry;
        LayerIndex = layerIndex;
    }

    public Linear Q { get; }
    public Linear K { get; }
    public Linear V { get; }
    public Linear Output { get; }
    public AttentionGeometry Geometry { get; }
    public int LayerIndex { get; }

    public Tensor Forward(ForwardContext ctx, Tensor x)
    {
        var backend = ctx.Backend;
        var g = Geometry;
        int rows = x.Rows;
        int start = ctx.StartPosition;
        if (start < 0) throw new InvalidOperationException($"negative start position {start}");

        var q = Q.Forward(ctx, x);   // [T, heads·headDim]
        var k = K.Forward(ctx, x);   // [T, kvHeads·headDim]
        var v = V.Forward(ctx, x);
        var attended = backend.Allocate(DType.F32, rows, g.QueryWidth);
        if (ctx.Segments is { } segments)
        {
            // Batched decode: the projections ran on every sequence's rows at once; positions, cache and attention are
            // each sequence's own.
            if (ctx.Cache is not null) throw new InvalidOperationException("a batched call carries its caches in its segments, not ForwardContext.Cache");
            int offset = 0;
            foreach (var segment in segments)
            {
                if (offset + segment.Rows > rows)
                    throw new InvalidOperationException($"the segments hold more rows than the call's {rows}");
                AttendCached(backend, segment.Cache, segment.StartPosition, q.SliceRows(offset, segment.Rows),
                    k.SliceRows(offset, segment.Rows), v.SliceRows(offset, segment.Rows), attended.SliceRows(offset, segment.Rows));
                offset += segment.Rows;
            }
            if (offset != rows) throw new InvalidOperationException($"the segments hold {offset} rows; the call has {rows}");
        }
        else if (ctx.Cache is { } cache)
        {
            AttendCached(backend, cache, start, q, k, v, attended);
        }
        else
        {
            if (g.RotaryDims > 0)
            {
                backend.Rotary(q, g.Heads, g.HeadDim, g.RotaryDims, g.RopeTheta, start);
                backend.Rotary(k, g.KvHeads, g.HeadDim, g.RotaryDims, g.RopeTheta, start);
            }
            backend.Attention(q, k, v, attended, g.Heads, g.KvHeads, g.HeadDim, causal: true, queryStart: 0);
        }
        ModuleTensors.Release(q);
        ModuleTensors.Release(k);
        ModuleTensors.Release(v);

        var y = Output.Forward(ctx, attended);
        ModuleTensors.Release(attended);
        return y;
    }

    /// <summary>Rotates the rows' q and k at positions [start, start + rows), appends k and v to the cache and attends
    /// causally over the cache prefix.</summary>
    private void AttendCached(Backends.IBackend backend, KvCache cache, int start, Tensor q, Tensor k, Tensor v, Tensor attended)
    {
        var g = Geometry;
        int rows = q.Rows;
        if (LayerIndex >= cache.Layers)
            throw new InvalidOperationException($"layer {LayerIndex} has no KV cache (the cache holds {cache.Layers} layers)");
        if (cache.KvWidth != g.KvWidth)
            throw new InvalidOperationException($"KV cache rows are {cache.KvWidth} wide; layer {LayerIndex} needs {g.KvWidth}");
        if (start + rows > cache.Capacity)
            throw new InvalidOperationException(
                $"KV cache full: positions [{start}, {start + rows}) do not fit its capacity of {cache.Capacity} tokens");
        if (g.RotaryDims > 0)
        {
            backend.Rotary(q, g.Heads, g.HeadDim, g.RotaryDims, g.RopeTheta, start);
            backend.Rotary(k, g.KvHeads, g.HeadDim, g.RotaryDims, g.RopeTheta, start);
        }
        var cacheKeys = cache.Keys(LayerIndex);
        var cacheValues = cache.Values(LayerIndex);
        backend.CopyRows(k, 0, cacheKeys, start, rows);
        backend.CopyRows(v, 0, cacheValues, start, rows);
        backend.Attention(q, cacheKeys.SliceRows(0, start + rows), cacheValues.SliceRows(0, start + rows), attended,
            g.Heads, g.KvHeads, g.HeadDim, causal: true, queryStart: start);
    }
}

/// <summary>Bidirectional multi-head self-attention without rotary (vision towers), scale 1/√headDim.</summary>
public sealed class EncoderSelfAttention
{
    public EncoderSelfAttention(Linear q, Linear k, Linear v, Linear output, int heads, int headDim)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(output);
        if (heads <= 0 || headDim <= 0) throw new ArgumentException($"heads {heads} and head dim {headDim} must be positive");
        int width = heads * headDim;
        if (q.OutFeatures != width || k.OutFeatures != width || v.OutFeatures != width || output.InFeatures != width)
            throw new ArgumentException($"encoder attention projections do not match {heads} heads × {headDim}");
        Q = q;
        K = k;
        V = v;
        Output = output;
        Heads = heads;
        HeadDim = headDim;
    }

    public Linear Q { get; }
    public Linear K { get; }
    public Linear V { get; }
    public Linear Output { get; }
    public int Heads { get; }
    public int HeadDim { get; }

    public Tensor Forward(ForwardContext ctx, Tensor x)
    {
        var backend = ctx.Backend;
        var q = Q.Forward(ctx, x);
        var k = K.Forward(ctx, x);
        var v = V.Forward(ctx, x);
        var attended = backend.Allocate(DType.F32, x.Rows, Heads * HeadDim);
        backend.Attention(q, k, v, attended, Heads, Heads, HeadDim, causal: false, queryStart: 0);
        ModuleTensors.Release(q);
        ModuleTensors.Release(k);
        ModuleTensors.Release(v);
        var y = Output.Forward(ctx, attended);
        ModuleTensors.Release(attended);
        return y;
    }
}
