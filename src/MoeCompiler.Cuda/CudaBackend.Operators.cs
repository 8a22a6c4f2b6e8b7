using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MoeCompiler.Cuda.Native;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda;

// CudaBackend's dense operators: linear algebra, elementwise, gathers and the vision operators (the class and its state: CudaBackend.cs).
public sealed unsafe partial class CudaBackend
{
    // ---------------------------------------------------------------- linear algebra

    public void Linear(Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        int k = weight.Columns, n = weight.Rank >= 2 ? weight.Rows : 1, m = x.Rows;
        if (x.Columns != k) throw new ArgumentException($"Linear: x {x} does not match weight {weight} (in = {k})");
        if (y.Rows != m || y.Columns != n) throw new ArgumentException($"Linear: y {y} should be [{m}, {n}]");
        if (bias is not null && bias.Length != n) throw new ArgumentException($"Linear: bias {bias} should have {n} elements");
        Tensor w = ResolveWeight(weight);
        Tensor? b = bias is null ? null : AsF32(ResolveWeight(bias));
        Tensor input = Input(x);
        RequireDeviceOutput(y);
        if (m == 0) return;

        if (m <= GemvMaxRows)
        {
            uint blocks = (uint)((n * 32L + ElementwiseBlock - 1) / ElementwiseBlock);
            nint biasPointer = b?.Data ?? 0;
            if (w.DType == DType.F32)
            {
                Launch("gemv_f32", blocks, 1, 1, ElementwiseBlock, 0, input, w, KernelArg.Pointer(biasPointer), y, m, n, k);
            }
            else
            {
                bool vector = k % 8 == 0 && w.Data % 16 == 0 && input.Data % 16 == 0;
                Launch(w.DType == DType.BF16 ? "gemv_bf16" : "gemv_f16", blocks, 1, 1, ElementwiseBlock, 0,
                    input, w, KernelArg.Pointer(biasPointer), y, m, n, k, vector ? 1 : 0);
            }
            return;
        }

        // Row-major y[m,n] = x[m,k]·W[n,k]ᵀ is column-major yᵀ[n,m] = W(k×n)ᵀ · xᵀ(k×m).
        float one = 1.0f, zero = 0.0f;
        if (!_options.RoundGemmActivations) w = AsF32(w);
        if (w.DType == DType.F32)
        {
            _cublas.Check(_cublas.cublasGemmEx(_cublasHandle, Cublas.OpT, Cublas.OpN, n, m, k, &one,
                w.Data, Cublas.DataTypeF32, k, input.Data, Cublas.DataTypeF32, k, &zero, y.Data, Cublas.DataTypeF32, n,
                Cublas.ComputeF32, Cublas.GemmDefault), "cublasGemmEx (f32)");
        }
        else
        {
            int dataType = w.DType == DType.BF16 ? Cublas.DataTypeBF16 : Cublas.DataTypeF16;
            using var converted = NewScratch((long)m * k * 2);
            Launch1D(w.DType == DType.BF16 ? "convert_f32_to_bf16" : "convert_f32_to_f16", (long)m * k,
                input, KernelArg.Pointer(converted.Pointer), (long)m * k);
            _cublas.Check(_cublas.cublasGemmEx(_cublasHandle, Cublas.OpT, Cublas.OpN, n, m, k, &one,
                w.Data, dataType, k, converted.Pointer, dataType, k, &zero, y.Data, Cublas.DataTypeF32, n,
                Cublas.ComputeF32, Cublas.GemmDefault), $"cublasGemmEx ({w.DType} × {w.DType} → f32)");
        }
        if (b is not null) Launch1D("add_bias_rows_f32", (long)m * n, y, b, (long)m * n, n);
    }

    /// <summary>
    /// Batched y[i] = x[i]·W[i]ᵀ for <paramref name="batch"/> equal-shaped problems laid out back to back
    /// (x [batch·m, k], weights [batch·n, k], y [batch·m, n]): the grouped expert GEMM when every expert gets the
    /// same number of rows. Weights BF16 or F16, f32 accumulation.
    /// </summary>
    public void LinearBatched(Tensor x, Tensor weights, Tensor y, int batch)
    {
        Tensor w = ResolveWeight(weights);
        if (w.DType is not (DType.BF16 or DType.F16)) throw new ArgumentException($"LinearBatched needs BF16 or F16 weights, not {w.DType}");
        int k = w.Columns, n = w.Rows / batch, m = x.Rows / batch;
        if (w.Rows != n * batch || x.Rows != m * batch || x.Columns != k || y.Rows != m * batch || y.Columns != n)
            throw new ArgumentException($"LinearBatched: shapes x {x}, w {w}, y {y} do not split into {batch} problems");
        Tensor input = Input(x);
        RequireDeviceOutput(y);
        int dataType = w.DType == DType.BF16 ? Cublas.DataTypeBF16 : Cublas.DataTypeF16;
        using var converted = NewScratch((long)x.Length * 2);
        Launch1D(w.DType == DType.BF16 ? "convert_f32_to_bf16" : "convert_f32_to_f16", x.Length, input, KernelArg.Pointer(converted.Pointer), x.Length);
        float one = 1.0f, zero = 0.0f;
        _cublas.Check(_cublas.cublasGemmStridedBatchedEx(_cublasHandle, Cublas.OpT, Cublas.OpN, n, m, k, &one,
            w.Data, dataType, k, (long)n * k, converted.Pointer, dataType, k, (long)m * k, &zero,
            y.Data, Cublas.DataTypeF32, n, (long)m * n, batch, Cublas.ComputeF32, Cublas.GemmDefault), "cublasGemmStridedBatchedEx");
    }

    // ---------------------------------------------------------------- elementwise

    public void Add(Tensor a, Tensor b, Tensor y) => Binary("add_f32", a, b, y);
    public void Multiply(Tensor a, Tensor b, Tensor y) => Binary("mul_f32", a, b, y);

    private void Binary(string kernel, Tensor a, Tensor b, Tensor y)
    {
        if (a.Length != b.Length || a.Length != y.Length) throw new ArgumentException($"{kernel}: {a}, {b}, {y} differ in size");
        Tensor left = AsF32(Input(a)), right = AsF32(Input(b));
        RequireDeviceOutput(y);
        Launch1D(kernel, y.Length, left, right, y, y.Length);
    }

    public void Scale(Tensor x, float scale, Tensor y)
    {
        SameLength(x, y, "Scale");
        Tensor input = AsF32(Input(x));
        RequireDeviceOutput(y);
        Launch1D("scale_f32", y.Length, input, scale, y, y.Length);
    }

    public void Activate(Tensor x, Activation activation, Tensor y)
    {
        SameLength(x, y, "Activate");
        Tensor input = AsF32(Input(x));
        RequireDeviceOutput(y);
        int kind = activation switch
        {
            Activation.GeluErf => 0,
            Activation.GeluTanh => 1,
            Activation.QuickGelu => 2,
            Activation.Silu => 3,
            _ => throw new ArgumentOutOfRangeException(nameof(activation), activation, "unknown activation"),
        };
        Launch1D("activate_f32", y.Length, input, y, y.Length, kind);
    }

    public void SwiGlu(Tensor gate, Tensor up, Tensor y)
    {
        if (gate.Length != up.Length || gate.Length != y.Length) throw new ArgumentException($"SwiGlu: {gate}, {up}, {y} differ in size");
        Tensor g = AsF32(Input(gate)), u = AsF32(Input(up));
        RequireDeviceOutput(y);
        Launch1D("swiglu_f32", y.Length, g, u, y, y.Length);
    }

    public void Softmax(Tensor x, Tensor y)
    {
        SameLength(x, y, "Softmax");
        Tensor input = AsF32(Input(x));
        RequireDeviceOutput(y);
        if (y.Rows == 0) return;
        Launch("softmax_rows_f32", (uint)y.Rows, 1, 1, RowBlock, 0, input, y, y.Columns);
    }

    public void LayerNorm(Tensor x, Tensor weight, Tensor? bias, float epsilon, Tensor y)
    {
        SameLength(x, y, "LayerNorm");
        if (weight.Length != x.Columns) throw new ArgumentException($"LayerNorm: weight {weight} does not match {x}");
        Tensor input = AsF32(Input(x)), w = AsF32(ResolveWeight(weight));
        Tensor? b = bias is null ? null : AsF32(ResolveWeight(bias));
        RequireDeviceOutput(y);
        if (y.Rows == 0) return;
        Launch("layer_norm_f32", (uint)y.Rows, 1, 1, RowBlock, 0, input, w, KernelArg.Pointer(b?.Data ?? 0), y, y.Columns, epsilon);
    }

    public void RmsNorm(Tensor x, Tensor weight, float epsilon, Tensor y)
    {
        SameLength(x, y, "RmsNorm");
        if (weight.Length != x.Columns) throw new ArgumentException($"RmsNorm: weight {weight} does not match {x}");
        Tensor input = AsF32(Input(x)), w = AsF32(ResolveWeight(weight));
        RequireDeviceOutput(y);
        if (y.Rows == 0) return;
        Launch("rms_norm_f32", (uint)y.Rows, 1, 1, RowBlock, 0, input, w, y, y.Columns, epsilon);
    }

    public void Rotary(Tensor x, int heads, int headDim, int rotaryDims, float theta, int startPosition)
    {
        if (x.Columns != heads * headDim) throw new ArgumentException($"Rotary: {x} is not [T, {heads}·{headDim}]");
        if (rotaryDims <= 0 || rotaryDims > headDim || rotaryDims % 2 != 0)
            throw new ArgumentOutOfRangeException(nameof(rotaryDims), $"rotary dims {rotaryDims} must be even and within head dim {headDim}");
        RequireDeviceOutput(x);
        long total = (long)x.Rows * heads * (rotaryDims / 2);
        if (total == 0) return;
        Launch1D("rotary_f32", total, x, x.Rows, heads, headDim, rotaryDims, theta, startPosition);
    }

    // ---------------------------------------------------------------- gathers

    public void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor y)
    {
        int vocab = table.Rank >= 2 ? table.Rows : 1, cols = table.Columns;
        if (y.Rows != ids.Length || y.Columns != cols) throw new ArgumentException($"Embedding: y {y} should be [{ids.Length}, {cols}]");
        for (int i = 0; i < ids.Length; i++)
            if ((uint)ids[i] >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {ids[i]} at position {i} is outside the vocabulary of {table.Name ?? "the embedding table"} ({vocab} rows)");
        Tensor t = ResolveWeight(table);
        RequireDeviceOutput(y);
        if (ids.Length == 0) return;
        using var deviceIds = UploadSmall(MemoryMarshal.AsBytes(ids));
        string kernel = t.DType switch
        {
            DType.F32 => "embedding_f32",
            DType.BF16 => "embedding_bf16",
            DType.F16 => "embedding_f16",
            _ => throw new ArgumentException($"embedding table {t} must be F32, BF16 or F16"),
        };
        Launch1D(kernel, (long)ids.Length * cols, t, KernelArg.Pointer(deviceIds.Pointer), y, ids.Length, cols, vocab);
    }

    public void GatherRows(Tensor source, ReadOnlySpan<int> rows, Tensor destination)
    {
        if (destination.Rows != rows.Length || destination.Columns != source.Columns)
            throw new ArgumentException($"GatherRows: destination {destination} should be [{rows.Length}, {source.Columns}]");
        CheckRows(rows, source.Rows, "GatherRows");
        Tensor src = AsF32(Input(source));
        RequireDeviceOutput(destination);
        if (rows.Length == 0) return;
        using var deviceRows = UploadSmall(MemoryMarshal.AsBytes(rows));
        Launch1D("gather_rows_f32", (long)rows.Length * source.Columns, src, KernelArg.Pointer(deviceRows.Pointer), destination,
            rows.Length, source.Columns, source.Rows);
    }

    public void ScatterAddRows(Tensor source, ReadOnlySpan<int> rows, ReadOnlySpan<float> weights, Tensor destination)
    {
        if (source.Rows != rows.Length || weights.Length != rows.Length || source.Columns != destination.Columns)
            throw new ArgumentException($"ScatterAddRows: source {source}, {rows.Length} rows, {weights.Length} weights, destination {destination} disagree");
        CheckRows(rows, destination.Rows, "ScatterAddRows");
        Tensor src = AsF32(Input(source));
        RequireDeviceOutput(destination);
        if (rows.Length == 0) return;
        using var deviceRows = UploadSmall(MemoryMarshal.AsBytes(rows));
        using var deviceWeights = UploadSmall(MemoryMarshal.AsBytes(weights));
        int cols = destination.Columns;
        Launch("scatter_add_rows_f32", (uint)((cols + ElementwiseBlock - 1) / ElementwiseBlock), 1, 1, ElementwiseBlock, 0,
            src, KernelArg.Pointer(deviceRows.Pointer), KernelArg.Pointer(deviceWeights.Pointer), destination, rows.Length, cols, destination.Rows);
    }

    /// <summary>
    /// The MoE router on the device: per row of <paramref name="logits"/> [T, experts], softmax, then the top
    /// <paramref name="k"/> experts (ties to the lower index) and their probabilities, renormalised to sum to one
    /// when asked (Mixtral). Results land in host spans [T·k] (this synchronises).
    /// </summary>
    public void RouterTopK(Tensor logits, int k, bool renormalize, Span<int> indices, Span<float> weights)
    {
        int rows = logits.Rows, experts = logits.Columns;
        if (k <= 0 || k > experts) throw new ArgumentOutOfRangeException(nameof(k), $"top-{k} of {experts} experts");
        if (indices.Length != rows * k || weights.Length != rows * k) throw new ArgumentException($"RouterTopK: outputs need {rows * k} entries");
        if (rows == 0) return;
        Tensor input = AsF32(Input(logits));
        using var deviceIndices = NewScratch((long)rows * k * 4);
        using var deviceWeights = NewScratch((long)rows * k * 4);
        Launch("router_topk_f32", (uint)((rows + 127) / 128), 1, 1, 128, 0, input, rows, experts, k, renormalize ? 1 : 0,
            KernelArg.Pointer(deviceIndices.Pointer), KernelArg.Pointer(deviceWeights.Pointer));
        ThrowIfCapturing("RouterTopK");
        fixed (int* pi = indices)
            _driver.Check(_driver.cuMemcpyDtoHAsync(pi, deviceIndices.Pointer, (nuint)(rows * k * 4), _stream), "cuMemcpyDtoHAsync");
        fixed (float* pw = weights)
            _driver.Check(_driver.cuMemcpyDtoHAsync(pw, deviceWeights.Pointer, (nuint)(rows * k * 4), _stream), "cuMemcpyDtoHAsync");
        Synchronize();
    }


    // ---------------------------------------------------------------- vision

    public void PatchEmbed(Tensor image, Tensor weight, Tensor? bias, int patch, Tensor y)
    {
        if (image.Rank != 3 || image.Dim(0) != 3) throw new ArgumentException($"PatchEmbed: image {image} is not [3, H, W]");
        int height = image.Dim(1), width = image.Dim(2);
        if (patch <= 0 || height % patch != 0 || width % patch != 0)
            throw new ArgumentException($"PatchEmbed: image {height}x{width} is not a whole number of {patch}-pixel patches");
        int channels = weight.Dim(0), patchLength = 3 * patch * patch, count = height / patch * (width / patch);
        if (weight.Length != (long)channels * patchLength) throw new ArgumentException($"PatchEmbed: weight {weight} is not [C, 3, {patch}, {patch}]");
        Tensor img = AsF32(Input(image));
        Tensor w = ResolveWeight(weight).Reshape(channels, patchLength);
        var patches = Allocate(DType.F32, count, patchLength);
        try
        {
            Launch1D("im2col_patches_f32", (long)count * patchLength, img, patches, height, width, patch);
            Linear(patches, w, bias, y);
        }
        finally
        {
            patches.Storage.Dispose();
        }
    }

    public void AvgPool2d(Tensor x, int height, int width, int kernel, Tensor y)
    {
        if (x.Rows != height * width) throw new ArgumentException($"AvgPool2d: x {x} is not [{height}·{width}, C]");
        if (kernel <= 0 || height % kernel != 0 || width % kernel != 0) throw new ArgumentException($"AvgPool2d: {height}x{width} grid does not divide by {kernel}");
        int outCells = height / kernel * (width / kernel);
        if (y.Rows != outCells || y.Columns != x.Columns) throw new ArgumentException($"AvgPool2d: y {y} should be [{outCells}, {x.Columns}]");
        Tensor input = AsF32(Input(x));
        RequireDeviceOutput(y);
        Launch1D("avg_pool2d_f32", y.Length, input, y, height, width, x.Columns, kernel);
    }

    public void UpsampleBicubic(Tensor x, int outHeight, int outWidth, Tensor y)
    {
        if (x.Rank != 3) throw new ArgumentException($"UpsampleBicubic: x {x} is not [C, H, W]");
        int channels = x.Dim(0), height = x.Dim(1), width = x.Dim(2);
        if (y.Length != (long)channels * outHeight * outWidth) throw new ArgumentException($"UpsampleBicubic: y {y} should be [{channels}, {outHeight}, {outWidth}]");
        Tensor input = AsF32(Input(x));
        RequireDeviceOutput(y);
        Launch1D("upsample_bicubic_f32", y.Length, input, y, channels, height, width, outHeight, outWidth);
    }
}
