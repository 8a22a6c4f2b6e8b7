using System.Runtime.CompilerServices;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.Intrinsics;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Runtime.Threading;

namespace MoeCompiler.Runtime.Backends;

public sealed unsafe partial class CpuBackend
{
    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        var (m, k, n) = CheckLinear(x, weight, y);
        ReadOnlySpan<float> b = BiasOrEmpty(bias, n);
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            for (int i = 0; i < m; i++)
                if (b.IsEmpty) y.AsFloats().Slice(i * n, n).Clear();
                else b.CopyTo(y.AsFloats().Slice(i * n, n));
            KeepAlive(bias, y);
            return;
        }
        lock (_gate)
        {
            fixed (float* biasPointer = b)
            {
                var view = weight.Storage is PackedWeightStorage packed && packed.Covers(weight) ? new WeightView(weight, packed.Packed) : new WeightView(weight);
                bool integer = IntegerDotDecode && Gemm.SupportsIntegerDot(view);
                bool integerGemm = IntegerGemmPrefill && Gemm.UsesIntegerGemm(_isa, Vnni, view);
                float* shared = _scratch.Shared(Gemm.SharedFloats(m, n, k, _isa, integer, integerGemm));
                Gemm.Run(_pool, _scratch.Ensure(Gemm.ScratchFloats(m, k, _isa)), shared, _isa, (float*)x.Data, m, k,
                    view, b.IsEmpty ? null : biasPointer, (float*)y.Data, integer, Vnni, integerGemm);
            }
        }
        KeepAlive(x, weight, bias, y);
    }

    public void LayerNorm(Tensor x, Tensor weight, Tensor? bias, float epsilon, Tensor y)
    {
        RequireF32(x, nameof(x));
        RequireF32(y, nameof(y));
        RequireWritable(y);
        int width = x.Columns;
        if (y.Length != x.Length || y.Columns != width) throw new ArgumentException($"LayerNorm: {x} to {y}");
        Normalize(x, VectorOf(weight, width, "LayerNorm weight"), BiasOrEmpty(bias, width), epsilon, y, centre: true);
        KeepAlive(x, weight, bias, y);
    }

    public void RmsNorm(Tensor x, Tensor weight, float epsilon, Tensor y)
    {
        RequireF32(x, nameof(x));
        RequireF32(y, nameof(y));
        RequireWritable(y);
        int width = x.Columns;
        if (y.Length != x.Length || y.Columns != width) throw new ArgumentException($"RmsNorm: {x} to {y}");
        Normalize(x, VectorOf(weight, width, "RmsNorm weight"), default, epsilon, y, centre: false);
        KeepAlive(x, weight, y);
    }

    private void Normalize(Tensor x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float epsilon, Tensor y, bool centre)
    {
        fixed (float* w = weight)
        fixed (float* b = bias)
        {
            var job = new RowJob
            {
                Kind = centre ? RowJob.Operation.LayerNorm : RowJob.Operation.RmsNorm, Isa = _isa,
                X = (float*)x.Data, Y = (float*)y.Data, W = w, B = bias.IsEmpty ? null : b,
                Width = x.Columns, Rows = x.Rows, Epsilon = epsilon,
            };
            _pool.Run((job.Rows + RowJob.RowsPerTask - 1) / RowJob.RowsPerTask, ref job);
        }
    }

    /// <summary>Row-wise kernels: each row is reduced in a fixed order by one task.</summary>
    private struct RowJob : IParallelJob
    {
        public const int RowsPerTask = 8;
        public enum Operation { LayerNorm, RmsNorm, Softmax }
        public Operation Kind;
        public KernelIsa Isa;
        public float* X, Y, W, B;
        public int Width, Rows;
        public float Epsilon;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            int end = Math.Min(Rows, (index + 1) * RowsPerTask);
            for (int r = index * RowsPerTask; r < end; r++)
            {
                float* x = X + (long)r * Width, y = Y + (long)r * Width;
                switch (Kind)
                {
                    case Operation.LayerNorm:
                        {
                            float mean = Elementwise.Sum(Isa, x, Width, 0, squares: false) / Width;
                            float variance = Elementwise.Sum(Isa, x, Width, mean, squares: true) / Width;
                            Elementwise.Normalize(Isa, x, mean, 1f / MathF.Sqrt(variance + Epsilon), W, B, y, Width);
                            break;
                        }
                    case Operation.RmsNorm:
                        {
                            float meanSquare = Elementwise.Sum(Isa, x, Width, 0, squares: true) / Width;
                            Elementwise.Normalize(Isa, x, 0, 1f / MathF.Sqrt(meanSquare + Epsilon), W, null, y, Width);
                            break;
                        }
                    default:
                        Elementwise.Softmax(Isa, x, y, Width);
                        break;
                }
            }
        }
    }

    public void Rotary(Tensor x, int heads, int headDim, int rotaryDims, float theta, int startPosition)
    {
        RequireF32(x, nameof(x));
        RequireWritable(x);
        if (x.Columns != heads * headDim) throw new ArgumentException($"Rotary: {x} is not [T, {heads}·{headDim}]");
        if (rotaryDims <= 0 || rotaryDims > headDim || rotaryDims % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(rotaryDims), $"rotary dims {rotaryDims} for head dim {headDim}");
        ArgumentOutOfRangeException.ThrowIfNegative(startPosition);
        int half = rotaryDims / 2, rows = x.Rows;
        lock (_gate)
        {
            float* table = _scratch.Shared(2L * rows * half);
            for (int t = 0; t < rows; t++)
                for (int i = 0; i < half; i++)
                {
                    double angle = (double)(startPosition + t) * Math.Pow(theta, -2.0 * i / rotaryDims);
                    table[(long)t * 2 * half + i] = (float)Math.Cos(angle);
                    table[(long)t * 2 * half + half + i] = (float)Math.Sin(angle);
                }
            var job = new RotaryJob { X = (float*)x.Data, Table = table, Heads = heads, HeadDim = headDim, Half = half, Isa = _isa };
            _pool.Run(rows, ref job);
        }
        KeepAlive(x);
    }

    private struct RotaryJob : IParallelJob
    {
        public float* X, Table;
        public int Heads, HeadDim, Half;
        public KernelIsa Isa;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int t, int worker)
        {
            float* cos = Table + (long)t * 2 * Half, sin = cos + Half;
            for (int h = 0; h < Heads; h++)
            {
                float* first = X + ((long)t * Heads + h) * HeadDim, second = first + Half;
                int i = 0;
                if (Isa == KernelIsa.Avx512)
                    for (; i + 16 <= Half; i += 16)
                    {
                        var a = Vector512.Load(first + i);
                        var b = Vector512.Load(second + i);
                        var c = Vector512.Load(cos + i);
                        var s = Vector512.Load(sin + i);
                        (a * c - b * s).Store(first + i);
                        (b * c + a * s).Store(second + i);
                    }
                else if (Isa == KernelIsa.Avx2)
                    for (; i + 8 <= Half; i += 8)
                    {
                        var a = Vector256.Load(first + i);
                        var b = Vector256.Load(second + i);
                        var c = Vector256.Load(cos + i);
                        var s = Vector256.Load(sin + i);
                        (a * c - b * s).Store(first + i);
                        (b * c + a * s).Store(second + i);
                    }
                for (; i < Half; i++)
                {
                    float a = first[i], b = second[i];
                    first[i] = a * cos[i] - b * sin[i];
                    second[i] = b * cos[i] + a * sin[i];
                }
            }
        }
    }

    public void Softmax(Tensor x, Tensor y)
    {
        RequireSameF32(x, x, y);
        RequireWritable(y);
        if (y.Columns != x.Columns) throw new ArgumentException($"Softmax: {x} to {y}");
        var job = new RowJob { Kind = RowJob.Operation.Softmax, Isa = _isa, X = (float*)x.Data, Y = (float*)y.Data, Width = x.Columns, Rows = x.Rows };
        _pool.Run((job.Rows + RowJob.RowsPerTask - 1) / RowJob.RowsPerTask, ref job);
        KeepAlive(x, y);
    }

    public void Attention(Tensor q, Tensor k, Tensor v, Tensor y, int heads, int kvHeads, int headDim, bool causal, int queryStart)
    {
        RequireF32(q, nameof(q));
        RequireF32(y, nameof(y));
        RequireHost(k);
        RequireHost(v);
        if (k.DType is not (DType.F32 or DType.BF16) || v.DType != k.DType)
            throw new ArgumentException($"Attention: keys {k} and values {v} must both be f32 or both bf16");
        RequireWritable(y);
        if (heads <= 0 || kvHeads <= 0 || headDim <= 0 || heads % kvHeads != 0)
            throw new ArgumentException($"Attention: {heads} heads over {kvHeads} kv heads of dim {headDim}");
        int queries = q.Rows, keys = k.Rows;
        if (q.Columns != heads * headDim || y.Columns != heads * headDim || y.Rows != queries)
            throw new ArgumentException($"Attention: q {q} / y {y} are not [T, {heads}·{headDim}]");
        if (k.Columns != kvHeads * headDim || v.Columns != kvHeads * headDim || v.Rows != keys)
            throw new ArgumentException($"Attention: k {k} / v {v} are not [S, {kvHeads}·{headDim}]");
        if (causal && (queryStart < 0 || queryStart + queries > keys))
            throw new ArgumentException($"Attention: causal queries at positions [{queryStart}, {queryStart + queries}) need that many keys, have {keys}");
        if (keys == 0) throw new ArgumentException("Attention: no keys");
        RequireDisjoint(k, y, "Attention");
        RequireDisjoint(v, y, "Attention");
        lock (_gate)
        {
            float* shared = _scratch.Shared(AttentionKernel.SharedFloats(queries, keys, heads, kvHeads, headDim, _isa));
            AttentionKernel.Run(_pool, _scratch.Ensure(AttentionKernel.ScratchFloats(keys, heads)), shared, _isa,
                (float*)q.Data, (byte*)k.Data, (byte*)v.Data, k.DType == DType.BF16, (float*)y.Data, queries, keys, heads, kvHeads, headDim, causal, queryStart);
        }
        KeepAlive(q, k, v, y);
    }

    public void PatchEmbed(Tensor image, Tensor weight, Tensor? bias, int patch, Tensor y)
    {
        RequireF32(image, nameof(image));
        RequireHost(weight);
        RequireF32(y, nameof(y));
        if (image.Rank != 3 || weight.Rank != 4 || patch <= 0 || weight.Dim(1) != image.Dim(0) || weight.Dim(2) != patch || weight.Dim(3) != patch)
            throw new ArgumentException($"PatchEmbed: image {image}, weight {weight}, patch {patch}");
        int channels = image.Dim(0), height = image.Dim(1), width = image.Dim(2), outChannels = weight.Dim(0);
        int gridH = height / patch, gridW = width / patch, patchLength = channels * patch * patch;
        if (y.Rows != gridH * gridW || y.Columns != outChannels) throw new ArgumentException($"PatchEmbed: output {y} should be [{gridH * gridW}, {outChannels}]");
        using var columns = new NativeStorage((long)gridH * gridW * patchLength * sizeof(float), zero: false);
        var patches = new Tensor(columns, 0, DType.F32, [gridH * gridW, patchLength]);
        float* src = (float*)image.Data, dst = (float*)patches.Data;
        for (int py = 0; py < gridH; py++)
            for (int px = 0; px < gridW; px++)
            {
                float* row = dst + (long)(py * gridW + px) * patchLength;
                for (int c = 0; c < channels; c++)
                    for (int i = 0; i < patch; i++)
                        Buffer.MemoryCopy(src + ((long)c * height + py * patch + i) * width + px * patch,
                            row + (c * patch + i) * patch, patch * 4L, patch * 4L);
            }
        KeepAlive(image);
        Linear(patches, weight.Reshape(outChannels, patchLength), bias, y);
    }

    public void AvgPool2d(Tensor x, int height, int width, int kernel, Tensor y)
    {
        RequireF32(x, nameof(x));
        RequireF32(y, nameof(y));
        if (kernel <= 0 || x.Rows != height * width) throw new ArgumentException($"AvgPool2d: {x} is not a {height}×{width} grid (kernel {kernel})");
        int channels = x.Columns, outH = height / kernel, outW = width / kernel;
        if (y.Rows != outH * outW || y.Columns != channels) throw new ArgumentException($"AvgPool2d: output {y} should be [{outH * outW}, {channels}]");
        var input = x.AsFloats();
        var output = y.AsFloats();
        float inverse = 1f / (kernel * kernel);
        for (int oy = 0; oy < outH; oy++)
            for (int ox = 0; ox < outW; ox++)
            {
                var target = output.Slice((oy * outW + ox) * channels, channels);
                target.Clear();
                for (int i = 0; i < kernel; i++)
                    for (int j = 0; j < kernel; j++)
                        TensorPrimitives.Add(target, input.Slice(((oy * kernel + i) * width + ox * kernel + j) * channels, channels), target);
                TensorPrimitives.Multiply(target, inverse, target);
            }
        KeepAlive(x, y);
    }

    public void UpsampleBicubic(Tensor x, int outHeight, int outWidth, Tensor y)
    {
        RequireF32(x, nameof(x));
        RequireF32(y, nameof(y));
        if (x.Rank != 3 || outHeight <= 0 || outWidth <= 0) throw new ArgumentException($"UpsampleBicubic: input {x} must be [C, H, W]");
        int channels = x.Dim(0), height = x.Dim(1), width = x.Dim(2);
        if (y.Length != (long)channels * outHeight * outWidth) throw new ArgumentException($"UpsampleBicubic: output {y} should be [{channels}, {outHeight}, {outWidth}]");
        RequireWritable(y);
        var rowTaps = BicubicTaps.Compute(height, outHeight);
        var columnTaps = BicubicTaps.Compute(width, outWidth);
        fixed (int* rowIndex = rowTaps.Index, columnIndex = columnTaps.Index)
        fixed (float* rowWeight = rowTaps.Weight, columnWeight = columnTaps.Weight)
        {
            var job = new BicubicJob
            {
                X = (float*)x.Data, Y = (float*)y.Data, Height = height, Width = width, OutHeight = outHeight, OutWidth = outWidth,
                RowIndex = rowIndex, ColumnIndex = columnIndex, RowWeight = rowWeight, ColumnWeight = columnWeight,
            };
            _pool.Run(channels * outHeight, ref job);
        }
        KeepAlive(x, y);
    }

    /// <summary>One output row: Σᵢ wyᵢ·(Σⱼ wxⱼ·x[clamped taps]), in PyTorch's order (rows outer, columns inner).</summary>
    private struct BicubicJob : IParallelJob
    {
        public float* X, Y, RowWeight, ColumnWeight;
        public int* RowIndex, ColumnIndex;
        public int Height, Width, OutHeight, OutWidth;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            int c = index / OutHeight, oy = index % OutHeight;
            float* output = Y + (long)index * OutWidth;
            float* plane = X + (long)c * Height * Width;
            for (int ox = 0; ox < OutWidth; ox++)
            {
                float sum = 0;
                for (int i = 0; i < 4; i++)
                {
                    float* row = plane + (long)RowIndex[oy * 4 + i] * Width;
                    float value = 0;
                    for (int j = 0; j < 4; j++) value += ColumnWeight[ox * 4 + j] * row[ColumnIndex[ox * 4 + j]];
                    sum += RowWeight[oy * 4 + i] * value;
                }
                output[ox] = sum;
            }
        }
    }

    private static ReadOnlySpan<float> BiasOrEmpty(Tensor? bias, int n)
    {
        if (bias is null) return default;
        return VectorOf(bias, n, "bias");
    }

    private static ReadOnlySpan<float> VectorOf(Tensor t, int expected, string what)
    {
        RequireHost(t);
        if (t.Length != expected) throw new ArgumentException($"{what} {t} must have {expected} elements");
        return t.DType == DType.F32 ? t.AsFloats() : t.ToFloatArray();
    }
}
