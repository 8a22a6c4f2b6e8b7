using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using MoeCompiler.Cuda.Native;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda;

public sealed class CudaBackendOptions
{
    public int DeviceOrdinal { get; init; }

    /// <summary>
    /// F32 weight matrices (rank ≥ 2, and int8 after dequantisation) are stored on the device in this dtype
    /// (BF16 or F16); null keeps them F32. BF16/F16 checkpoint weights are uploaded as they are. Vectors (norm
    /// weights, biases) stay F32. Accumulation is always F32.
    /// </summary>
    public DType? MatrixDType { get; init; } = DType.BF16;

    /// <summary>Lets cuBLAS use TF32 tensor cores for F32 × F32 GEMMs (faster, ~10-bit mantissa products).</summary>
    public bool AllowTf32 { get; init; }

    /// <summary>Where compiled kernels are cached; null uses <see cref="KernelCache.Shared"/>.</summary>
    public KernelCache? KernelCache { get; init; }

    /// <summary>
    /// Runs decode steps (<see cref="IBackend.RunDecodeStep"/>) as CUDA graphs: each step is captured and launched
    /// as one graph. False runs them eagerly (same results, bit for bit).
    /// </summary>
    public bool UseGraphs { get; init; } = true;

    /// <summary>
    /// How cuBLAS GEMMs (more than 8 rows: prefill, the vision tower, prefill experts) multiply 16-bit weights.
    /// True (default, the fast path): the f32 activations are rounded to the weight dtype so the product runs on
    /// bf16/f16 tensor cores. False: the activations stay f32 and multiply a cached f32 copy of the weight (exact
    /// widening), which is what <see cref="Runtime.Backends.CpuBackend"/> computes, up to the order of the f32
    /// sums. The decode GEMV (up to 8 rows) never rounds activations. False exists for parity: with it a router
    /// sees the CPU's logits to about 1e-6, so routing agrees with the CPU exactly except at ties closer than that
    /// (see docs/gpu.md, "Routing guarantee"); it costs a second, f32 copy of every weight a GEMM touches.
    /// </summary>
    public bool RoundGemmActivations { get; init; } = true;
}

/// <summary>A host synchronisation (download, stream sync) was requested while a CUDA graph was being captured.</summary>
public class GraphCaptureException(string message) : InvalidOperationException(message);

/// <summary>
/// A captured step needed one-time set-up that must not be recorded (e.g. the device table of an MoE layer's
/// expert weights): the step runs eagerly once, and later steps are captured again.
/// </summary>
public sealed class GraphSetupNeededException(string message) : GraphCaptureException(message);

/// <summary>
/// <see cref="IBackend"/> on an NVIDIA GPU through the CUDA driver API: device tensors (<see cref="CudaStorage"/>,
/// <c>IsHost == false</c>), weights uploaded once by <see cref="PrepareWeight"/>, a caching allocator, one stream,
/// CUDA C kernels compiled by NVRTC for the device at first use, and cuBLAS for GEMMs with more than
/// <see cref="GemvMaxRows"/> rows. Activations are F32. All work is ordered on one stream; only downloads
/// synchronise. Not thread-safe: use one backend per thread of work (like a CUDA stream).
/// </summary>
public sealed unsafe class CudaBackend : IBackend, IDeviceMoeBackend
{
    /// <summary>Linear with at most this many rows uses the GEMV kernels (decode); more rows use cuBLAS.</summary>
    public const int GemvMaxRows = 8;
    private const int ElementwiseBlock = 256;
    private const int RowBlock = 256;
    private const int AttentionBlock = 128;
    private const int AttentionChunk = 256;
    private const long CublasWorkspaceBytes = 32L << 20;

    [ThreadStatic] private static nint t_currentContext;

    private readonly CudaDriver _driver;
    private readonly Nvrtc _nvrtc;
    private readonly Cublas _cublas;
    private readonly KernelCache _kernelCache;
    private readonly CudaBackendOptions _options;
    private readonly int _device;
    private readonly nint _context;
    private readonly nint _stream;
    private readonly nint _cublasHandle;
    private readonly CachingAllocator _allocator;
    private readonly PinnedArena _arena;
    private readonly Dictionary<string, nint> _modules = new(StringComparer.Ordinal);
    private readonly Dictionary<string, nint> _functions = new(StringComparer.Ordinal);
    private readonly ConditionalWeakTable<TensorStorage, Dictionary<(long Offset, long Length, DType DType), Tensor>> _derived = new();
    private readonly nint _cublasWorkspace;
    private readonly ConditionalWeakTable<Tensor[], ExpertTable> _expertTables = new();
    /// <summary>Host work waiting for the stream (routing read-backs): run at the next <see cref="Synchronize"/>.</summary>
    private readonly List<Action> _afterSynchronize = new();
    private int _afterSynchronizeAtCapture;
    private CudaGraphDecode? _decodeGraphs;
    private bool _capturing;
    private bool _disposed;

    private CudaBackend(CudaBackendOptions options)
    {
        _options = options;
        if (options.MatrixDType is { } m && m != DType.BF16 && m != DType.F16 && m != DType.F32)
            throw new ArgumentException($"MatrixDType must be BF16, F16 or F32, not {m}", nameof(options));
        _driver = CudaDriver.Shared;
        int count = _driver.InitializeAndCountDevices();
        if (count == 0) throw new CudaUnavailableException($"no CUDA device: the driver ({_driver.LibraryPath}) reports none");
        if (options.DeviceOrdinal < 0 || options.DeviceOrdinal >= count)
            throw new CudaUnavailableException($"CUDA device {options.DeviceOrdinal} requested but {count} device(s) present");
        int driverMajor = _driver.DriverVersion / 1000;
        _nvrtc = Nvrtc.ForDriver(driverMajor);
        _cublas = Cublas.ForDriver(driverMajor);
        _kernelCache = options.KernelCache ?? KernelCache.Shared;

        int device;
        _driver.Check(_driver.cuDeviceGet(&device, options.DeviceOrdinal), "cuDeviceGet");
        _device = device;
        DeviceName = _driver.DeviceName(device);
        ComputeCapability = _driver.Attribute(device, CudaDriver.AttributeComputeCapabilityMajor) * 10
                            + _driver.Attribute(device, CudaDriver.AttributeComputeCapabilityMinor);
        Multiprocessors = _driver.Attribute(device, CudaDriver.AttributeMultiprocessorCount);
        MaxSharedMemoryPerBlock = _driver.Attribute(device, CudaDriver.AttributeMaxSharedMemoryPerBlockOptin);
        (KernelArchitecture, KernelsAreCubin) = ArchitectureSelection.Choose(ComputeCapability, _nvrtc.SupportedArchitectures(), _nvrtc.CanEmitCubin);

        nint context;
        _driver.Check(_driver.cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain");
        _context = context;
        MakeCurrent();
        nint stream;
        _driver.Check(_driver.cuStreamCreate(&stream, CudaDriver.StreamNonBlocking), "cuStreamCreate");
        _stream = stream;
        _allocator = new CachingAllocator(new DriverMemory(_driver));
        _arena = new PinnedArena(_driver);

        nint handle;
        _cublas.Check(_cublas.cublasCreate(&handle), "cublasCreate");
        _cublasHandle = handle;
        _cublas.Check(_cublas.cublasSetStream(handle, stream), "cublasSetStream");
        _cublas.Check(_cublas.cublasSetMathMode(handle, options.AllowTf32 ? Cublas.Tf32TensorOpMath : Cublas.DefaultMath), "cublasSetMathMode");
        if (_cublas.cublasSetWorkspace != null)
        {
            // A fixed workspace keeps cuBLAS from allocating inside a graph capture.
            _cublasWorkspace = _allocator.Allocate(CublasWorkspaceBytes, out _);
            _cublas.Check(_cublas.cublasSetWorkspace(handle, _cublasWorkspace, (nuint)CublasWorkspaceBytes), "cublasSetWorkspace");
        }
    }

    /// <summary>Creates a backend on the configured device or returns false with the reason (no driver, no device, no cuBLAS or NVRTC).</summary>
    public static bool TryCreate(out CudaBackend? backend, out string reason, CudaBackendOptions? options = null)
    {
        try
        {
            backend = new CudaBackend(options ?? new CudaBackendOptions());
            reason = "";
            return true;
        }
        catch (Exception e) when (e is CudaUnavailableException or CudaException)
        {
            backend = null;
            reason = e.Message;
            return false;
        }
    }

    /// <summary>Creates a backend or throws <see cref="CudaUnavailableException"/> / <see cref="CudaException"/>.</summary>
    public static CudaBackend Create(CudaBackendOptions? options = null) => new(options ?? new CudaBackendOptions());

    public string Name => $"cuda:{_options.DeviceOrdinal} ({DeviceName}, sm_{ComputeCapability})";

    /// <summary>
    /// As on the CPU: bf16 keys and values for 16-bit weights (rounded to nearest even as they are stored; the
    /// attention kernels read them directly), f32 for f32 weights. Half the cache bytes every decode step reads.
    /// </summary>
    public DType KvCacheDType(DType weightDType) => weightDType == DType.F32 ? DType.F32 : DType.BF16;
    public string DeviceName { get; }
    public int ComputeCapability { get; }
    public int Multiprocessors { get; }
    public int MaxSharedMemoryPerBlock { get; }
    /// <summary>What NVRTC compiles the kernels for, e.g. <c>sm_90</c> (CUBIN) or <c>compute_80</c> (PTX).</summary>
    public string KernelArchitecture { get; }
    public bool KernelsAreCubin { get; }
    public CachingAllocator Allocator => _allocator;
    public nint Stream => _stream;
    internal CudaDriver Driver => _driver;
    public bool IsCapturing => _capturing;
    /// <summary>The decode-step graph runner of <see cref="RunDecodeStep"/> (null until the first step, or with UseGraphs off).</summary>
    public CudaGraphDecode? DecodeGraphs => _decodeGraphs;

    // ---------------------------------------------------------------- memory

    public Tensor Allocate(DType dtype, params int[] shape)
    {
        long n = 1;
        foreach (int d in shape) n = checked(n * d);
        return new Tensor(NewStorage(n * dtype.SizeInBytes()), 0, dtype, shape);
    }

    private CudaStorage NewStorage(long bytes)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        MakeCurrent();
        nint pointer = _allocator.Allocate(bytes, out _, Reclaim);
        return new CudaStorage(_allocator, pointer, bytes, this);
    }

    /// <summary>Runs finalizers of unreachable device tensors so their blocks return to the cache.</summary>
    private static void Reclaim()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
    }

    /// <summary>A scratch block released to the cache at the end of the using scope (stream order makes that safe).</summary>
    private readonly struct Scratch(CachingAllocator allocator, nint pointer) : IDisposable
    {
        public nint Pointer { get; } = pointer;
        public void Dispose()
        {
            if (Pointer != 0) allocator.Release(Pointer); // default(Scratch): nothing was allocated
        }
    }

    private Scratch NewScratch(long bytes)
    {
        MakeCurrent();
        return new Scratch(_allocator, _allocator.Allocate(bytes, out _, Reclaim));
    }

    public Tensor PrepareWeight(Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (IsOurs(weight)) return weight;
        if (!weight.IsHost) throw new ArgumentException($"weight {weight.Name} lives on another device or backend", nameof(weight));
        DType target = weight.DType switch
        {
            DType.BF16 or DType.F16 => weight.DType,
            DType.F32 or DType.I8 or DType.Q4 when weight.Rank >= 2 && _options.MatrixDType is { } m => m,
            _ => DType.F32,
        };
        var storage = NewStorage(weight.Length * target.SizeInBytes());
        var result = new Tensor(storage, 0, target, weight.Shape, weight.Name);
        if (target == weight.DType)
        {
            CopyHostToDevice(weight.Data, result.Data, weight.ByteLength);
        }
        else
        {
            byte[] converted = HostConversions.ConvertTo(weight, target);
            fixed (byte* p = converted) CopyHostToDevice((nint)p, result.Data, converted.Length);
        }
        GC.KeepAlive(weight); // host memory read through its raw pointer; device memory is protected by stream order
        return result;
    }

    public void Upload(ReadOnlySpan<float> source, Tensor destination)
    {
        RequireF32(destination, nameof(destination));
        if (source.Length != destination.Length)
            throw new ArgumentException($"{source.Length} values for {destination}", nameof(source));
        if (destination.IsHost)
        {
            source.CopyTo(destination.AsFloats());
            GC.KeepAlive(destination);
            return;
        }
        RequireOurs(destination, nameof(destination));
        fixed (float* p = source) CopyHostToDevice((nint)p, destination.Data, destination.ByteLength);
    }

    public void Download(Tensor source, Span<float> destination)
    {
        if (source.Length != destination.Length)
            throw new ArgumentException($"{destination.Length} values for {source}", nameof(destination));
        if (source.IsHost)
        {
            source.ToFloatArray().CopyTo(destination);
            return;
        }
        RequireOurs(source, nameof(source));
        Tensor f32 = AsF32(source);
        ThrowIfCapturing("Download");
        fixed (float* p = destination)
            _driver.Check(_driver.cuMemcpyDtoHAsync(p, f32.Data, (nuint)f32.ByteLength, _stream), "cuMemcpyDtoHAsync");
        Synchronize();
    }

    /// <summary>Waits for all queued work; the pinned upload arena is reused after this.</summary>
    public void Synchronize()
    {
        ThrowIfCapturing("Synchronize");
        MakeCurrent();
        _driver.Check(_driver.cuStreamSynchronize(_stream), "cuStreamSynchronize (a kernel failed earlier, or this call)");
        if (_afterSynchronize.Count > 0)
        {
            // Read-backs land in the pinned arena: run them before it is reused.
            var pending = _afterSynchronize.ToArray();
            _afterSynchronize.Clear();
            foreach (var action in pending) action();
        }
        _arena.Reset();
    }

    public void Copy(Tensor source, Tensor destination)
    {
        if (source.Length != destination.Length)
            throw new ArgumentException($"cannot copy {source} into {destination}: element counts differ");
        if (destination.IsHost)
        {
            if (destination.DType != DType.F32) throw new ArgumentException($"host destination {destination} must be F32", nameof(destination));
            Download(source, destination.AsFloats());
            GC.KeepAlive(destination);
            return;
        }
        RequireOurs(destination, nameof(destination));
        if (source.IsHost)
        {
            if (source.DType != destination.DType)
                throw new ArgumentException($"cannot copy host {source} into {destination}: dtypes differ", nameof(source));
            CopyHostToDevice(source.Data, destination.Data, source.ByteLength);
            GC.KeepAlive(source);
            return;
        }
        RequireOurs(source, nameof(source));
        if (source.DType == destination.DType)
        {
            CopyDeviceToDevice(source.Data, destination.Data, source.ByteLength);
            return;
        }
        RequireF32(destination, nameof(destination));
        Tensor f32 = AsF32(source);
        CopyDeviceToDevice(f32.Data, destination.Data, destination.ByteLength);
    }

    public void CopyRows(Tensor source, int sourceRow, Tensor destination, int destinationRow, int count)
    {
        if (source.Columns != destination.Columns)
            throw new ArgumentException($"CopyRows: {source} and {destination} have different row widths");
        if (count == 0) return;
        Tensor from = source.Rank == 1 ? source.Reshape(1, source.Columns) : source.Reshape(source.Rows, source.Columns);
        Tensor to = destination.Rank == 1 ? destination.Reshape(1, destination.Columns) : destination.Reshape(destination.Rows, destination.Columns);
        if (source.DType == DType.F32 && destination.DType == DType.BF16)
        {
            // A bf16 KV cache: rows rounded to nearest even as they are stored, as the CPU backend does.
            if (sourceRow < 0 || sourceRow + count > from.Rows || destinationRow < 0 || destinationRow + count > to.Rows)
                throw new ArgumentOutOfRangeException(nameof(count), $"CopyRows: rows [{sourceRow}, +{count}) of {source} to [{destinationRow}, +{count}) of {destination}");
            Tensor src = Input(from.SliceRows(sourceRow, count));
            RequireOurs(destination, nameof(destination));
            Tensor dst = to.SliceRows(destinationRow, count);
            Launch1D("convert_f32_to_bf16", dst.Length, src, dst, dst.Length);
            return;
        }
        Copy(from.SliceRows(sourceRow, count), to.SliceRows(destinationRow, count));
    }

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

    // ---------------------------------------------------------------- attention

    public void Attention(Tensor q, Tensor k, Tensor v, Tensor y, int heads, int kvHeads, int headDim, bool causal, int queryStart)
    {
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0) throw new ArgumentException($"Attention: {heads} heads do not group over {kvHeads} kv heads");
        if (q.Columns != heads * headDim || y.Columns != heads * headDim || y.Rows != q.Rows)
            throw new ArgumentException($"Attention: q {q} / y {y} are not [T, {heads}·{headDim}]");
        if (k.Columns != kvHeads * headDim || v.Columns != kvHeads * headDim || k.Rows != v.Rows)
            throw new ArgumentException($"Attention: k {k} / v {v} are not [Tk, {kvHeads}·{headDim}]");
        if (headDim > 1024) throw new ArgumentOutOfRangeException(nameof(headDim), "head dim above 1024 is not supported");
        int tq = q.Rows, tk = k.Rows;
        Tensor qd = AsF32(Input(q)), kd = Input(k), vd = Input(v);
        // Keys and values are read as they are when both are bf16 (a bf16 KV cache changes every step, so it must
        // never go through the cached conversion of AsF32); anything else is read as f32.
        bool bf16 = kd.DType == DType.BF16 && vd.DType == DType.BF16;
        if (!bf16)
        {
            kd = AsF32(kd);
            vd = AsF32(vd);
        }
        string suffix = bf16 ? "_bf16" : "_f32";
        RequireDeviceOutput(y);
        if (tq == 0) return;
        float scale = 1.0f / MathF.Sqrt(headDim);
        bool decode = tq <= 4;
        if (!decode)
        {
            if (TiledAttentionShape(headDim, SharedMemoryLimit) is { } tiles)
            {
                Launch("attention_tiled" + suffix, (uint)((tq + tiles.QueryTile - 1) / tiles.QueryTile), (uint)heads, 1, AttentionBlock,
                    (uint)TiledAttentionSharedBytes(headDim, tiles.QueryTile, tiles.KeyTile),
                    qd, kd, vd, y, tq, tk, heads, kvHeads, headDim, causal ? 1 : 0, queryStart, scale, tiles.QueryTile, tiles.KeyTile);
                return;
            }
            long rowsShared = (long)(tk + headDim) * 4;
            if (rowsShared <= 48 * 1024 - 256) // static shared memory (the reduction scratch) counts too
            {
                Launch("attention_rows" + suffix, (uint)tq, (uint)heads, 1, AttentionBlock, (uint)rowsShared,
                    qd, kd, vd, y, tk, heads, kvHeads, headDim, causal ? 1 : 0, queryStart, scale);
                return;
            }
        }
        // Flash-decoding: split the keys into chunks across blocks, then combine.
        int splits = Math.Max(1, (tk + AttentionChunk - 1) / AttentionChunk);
        long slots = (long)tq * heads * splits;
        using var partialMax = NewScratch(slots * 4);
        using var partialSum = NewScratch(slots * 4);
        using var partialOut = NewScratch(slots * headDim * 4);
        Launch("attention_split" + suffix, (uint)splits, (uint)heads, (uint)tq, AttentionBlock, (uint)((headDim + AttentionChunk) * 4),
            qd, kd, vd, KernelArg.Pointer(partialMax.Pointer), KernelArg.Pointer(partialSum.Pointer), KernelArg.Pointer(partialOut.Pointer),
            tk, heads, kvHeads, headDim, causal ? 1 : 0, queryStart, scale, AttentionChunk);
        uint combineBlock = (uint)Math.Min(1024, (headDim + 31) / 32 * 32);
        Launch("attention_combine_f32", (uint)heads, (uint)tq, 1, combineBlock, 0,
            KernelArg.Pointer(partialMax.Pointer), KernelArg.Pointer(partialSum.Pointer), KernelArg.Pointer(partialOut.Pointer),
            y, heads, headDim, splits);
    }

    /// <summary>Dynamic shared memory a block may use: the opt-in maximum when the device has one, else 48 KiB.</summary>
    private int SharedMemoryLimit => Math.Max(48 * 1024, MaxSharedMemoryPerBlock) - 1024;

    /// <summary>Shared bytes of attention_tiled (attention.cu): Q, K (padded rows), V, scores, output, and m, l, α.</summary>
    internal static long TiledAttentionSharedBytes(int headDim, int queryTile, int keyTile) =>
        4L * ((long)queryTile * headDim + (long)keyTile * (headDim + 1) + (long)keyTile * headDim + (long)queryTile * keyTile
              + (long)queryTile * headDim + 3L * queryTile);

    /// <summary>
    /// The tile sizes of the tiled prefill kernel: 16 query rows per block and the largest key tile of 64, 32, 16
    /// or 8 rows that fits the shared-memory limit; null when even the smallest does not (huge head dims).
    /// </summary>
    internal static (int QueryTile, int KeyTile)? TiledAttentionShape(int headDim, int sharedLimitBytes)
    {
        const int queryTile = 16;
        foreach (int keyTile in (ReadOnlySpan<int>)[64, 32, 16, 8])
            if (TiledAttentionSharedBytes(headDim, queryTile, keyTile) <= sharedLimitBytes) return (queryTile, keyTile);
        return null;
    }

    // ---------------------------------------------------------------- MoE on the device

    /// <summary>Per expert weight list: a device array of the experts' pointers, made once.</summary>
    private sealed class ExpertTable(CudaStorage storage, DType dtype, bool aligned)
    {
        public CudaStorage Storage { get; } = storage;
        public DType DType { get; } = dtype;
        /// <summary>Every pointer is 16-byte aligned (the GEMV kernels' vector loads).</summary>
        public bool Aligned { get; } = aligned;
    }

    /// <summary>
    /// Decode-sized calls (at most <see cref="GemvMaxRows"/> rows) of either routing, except DeepSpeed top-1 with the
    /// sampled policy when capacity could drop a token (its random token selection is drawn on the host), with
    /// experts whose weights all live here in one 16-bit or f32 dtype.
    /// </summary>
    public bool CanRunMoe(int tokens, Runtime.Modules.MoeOptions options, MoeExpertWeights experts)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(experts);
        if (tokens <= 0 || tokens > GemvMaxRows || experts.Experts != options.Experts) return false;
        if (options.Routing == Runtime.Modules.MoeRoutingKind.DeepSpeed && options.TopK == 1
            && options.SecondExpert == Runtime.Modules.SecondExpertPolicy.Sampled
            && Runtime.Modules.MoeRouter.Capacity(tokens, options.Experts, 1, options.EvalCapacityFactor, options.MinCapacity) < tokens)
            return false;
        if ((experts.Kind == MoeExpertKind.GatedSilu) != (experts.Second is not null)) return false;
        foreach (var list in new[] { experts.First, experts.Second, experts.Down })
        {
            if (list is null) continue;
            if (list.Length != options.Experts) return false;
            foreach (var w in list)
                if (!IsOurs(w) || w.DType != list[0].DType || w.DType is not (DType.BF16 or DType.F16 or DType.F32) || w.Rank != 2) return false;
        }
        foreach (var list in new[] { experts.FirstBias, experts.DownBias })
            if (list is not null && (list.Length != options.Experts || list.Any(b => !IsOurs(b) || b.DType != DType.F32))) return false;
        return true;
    }

    public void RunMoe(Tensor x, Tensor routerLogits, Runtime.Modules.MoeOptions options, MoeExpertWeights experts,
        ReadOnlySpan<float> secondChoiceNoise, Tensor y, Action<int[], float[]>? onRouting)
    {
        int tokens = x.Rows, count = options.Experts, k = options.TopK, slots = tokens * k;
        if (!CanRunMoe(tokens, options, experts)) throw new ArgumentException($"RunMoe: this layer cannot run on the device (CanRunMoe is false for {tokens} rows)");
        if (routerLogits.Rows != tokens || routerLogits.Columns != count) throw new ArgumentException($"RunMoe: router logits {routerLogits} should be [{tokens}, {count}]");
        if (x.Columns != experts.InFeatures) throw new ArgumentException($"RunMoe: x {x} does not match experts taking {experts.InFeatures} features");
        if (y.Rows != tokens || y.Columns != experts.OutFeatures) throw new ArgumentException($"RunMoe: y {y} should be [{tokens}, {experts.OutFeatures}]");
        if (!secondChoiceNoise.IsEmpty && secondChoiceNoise.Length != tokens * count)
            throw new ArgumentException($"RunMoe: {secondChoiceNoise.Length} noise values for {tokens} × {count}");
        Tensor input = AsF32(Input(x)), logits = AsF32(Input(routerLogits));
        RequireDeviceOutput(y);

        var first = Table(experts.First);
        var second = experts.Second is null ? null : Table(experts.Second);
        var down = Table(experts.Down);
        var firstBias = experts.FirstBias is null ? null : Table(experts.FirstBias);
        var downBias = experts.DownBias is null ? null : Table(experts.DownBias);

        // Routing: chosen, weights, slot_of [slots]; probabilities [tokens, experts]; counts, offsets [experts]; group_rows [slots].
        long intsAndFloats = 4L * slots + (long)tokens * count + 2L * count;
        using var routing = NewScratch(intsAndFloats * 4);
        nint chosen = routing.Pointer, weights = chosen + slots * 4, slotOf = weights + slots * 4, groupRows = slotOf + slots * 4;
        nint probabilities = groupRows + slots * 4, counts = probabilities + (nint)tokens * count * 4, offsets = counts + count * 4;
        using var noise = secondChoiceNoise.IsEmpty ? default : UploadSmall(MemoryMarshal.AsBytes(secondChoiceNoise));
        int capacity = options.Routing == Runtime.Modules.MoeRoutingKind.DeepSpeed
            ? Runtime.Modules.MoeRouter.Capacity(tokens, count, k, options.EvalCapacityFactor, options.MinCapacity)
            : slots;
        Launch("moe_route_f32", 1, 1, 1, 1, 0, logits, KernelArg.Pointer(noise.Pointer), tokens, count, k,
            options.Routing == Runtime.Modules.MoeRoutingKind.Mixtral ? 0 : 1, capacity,
            KernelArg.Pointer(chosen), KernelArg.Pointer(weights), KernelArg.Pointer(probabilities), KernelArg.Pointer(counts),
            KernelArg.Pointer(offsets), KernelArg.Pointer(groupRows), KernelArg.Pointer(slotOf));
        if (onRouting is not null) ReadBackRouting(chosen, weights, slots, onRouting);

        // Expert products over the grouped slots; unused slots of the fixed-size buffers are never read.
        int hidden = experts.Hidden, outWidth = experts.OutFeatures;
        var a = Allocate(DType.F32, slots, hidden);
        GroupedGemv(input, groupRows, first, firstBias, counts, offsets, a, hidden, experts.InFeatures, count);
        if (second is not null)
        {
            var b = Allocate(DType.F32, slots, hidden);
            GroupedGemv(input, groupRows, second, null, counts, offsets, b, hidden, experts.InFeatures, count);
            Launch1D("swiglu_f32", a.Length, a, b, a, a.Length);
            b.Storage.Dispose();
        }
        else
        {
            Activate(a, experts.Activation, a);
        }
        var expertOut = Allocate(DType.F32, slots, outWidth);
        GroupedGemv(a, 0, down, downBias, counts, offsets, expertOut, outWidth, hidden, count);
        Launch1D("moe_combine_f32", (long)tokens * outWidth, expertOut, KernelArg.Pointer(slotOf), KernelArg.Pointer(weights), y, tokens, k, outWidth);
        a.Storage.Dispose();
        expertOut.Storage.Dispose();
    }

    private void GroupedGemv(Tensor x, nint rowOfSlot, ExpertTable weights, ExpertTable? bias, nint counts, nint offsets, Tensor y, int n, int k, int experts)
    {
        string kernel = weights.DType switch
        {
            DType.BF16 => "moe_gemv_bf16",
            DType.F16 => "moe_gemv_f16",
            _ => "moe_gemv_f32",
        };
        bool vector = weights.DType != DType.F32 && weights.Aligned && k % 8 == 0 && x.Data % 16 == 0;
        uint blocks = (uint)((n * 32L + ElementwiseBlock - 1) / ElementwiseBlock);
        Launch(kernel, blocks, (uint)experts, 1, ElementwiseBlock, 0, x, KernelArg.Pointer(rowOfSlot), KernelArg.Pointer(weights.Storage.Pointer),
            KernelArg.Pointer(bias?.Storage.Pointer ?? 0), KernelArg.Pointer(counts), KernelArg.Pointer(offsets), y, n, k, vector ? 1 : 0);
    }

    /// <summary>The device pointer table of one expert weight list, made on first use (never inside a graph capture).</summary>
    private ExpertTable Table(Tensor[] weights)
    {
        if (_expertTables.TryGetValue(weights, out var table)) return table;
        if (_capturing)
            throw new GraphSetupNeededException("the first use of an MoE layer's expert table uploads it, which is not recorded in a CUDA graph");
        var pointers = new long[weights.Length];
        bool aligned = true;
        for (int e = 0; e < weights.Length; e++)
        {
            Tensor w = ResolveWeight(weights[e]);
            pointers[e] = w.Data;
            aligned &= w.Data % 16 == 0;
        }
        var storage = NewStorage(pointers.Length * 8L);
        fixed (long* p = pointers) CopyHostToDevice((nint)p, storage.Pointer, pointers.Length * 8L);
        // The table holds raw pointers: keep the weight tensors' storages alive for as long as the table.
        table = new ExpertTable(storage, weights[0].DType, aligned);
        _expertTables.AddOrUpdate(weights, table);
        return table;
    }

    /// <summary>
    /// Queues a copy of the routing into pinned memory (allowed inside a graph capture) and hands it to
    /// <paramref name="onRouting"/> at the next synchronisation, so the host never waits for the router.
    /// </summary>
    private void ReadBackRouting(nint chosen, nint weights, int slots, Action<int[], float[]> onRouting)
    {
        nint staging = _arena.Take(slots * 8L);
        _driver.Check(_driver.cuMemcpyDtoHAsync((void*)staging, chosen, (nuint)(slots * 4), _stream), "cuMemcpyDtoHAsync (routing)");
        _driver.Check(_driver.cuMemcpyDtoHAsync((void*)(staging + slots * 4), weights, (nuint)(slots * 4), _stream), "cuMemcpyDtoHAsync (routing)");
        _afterSynchronize.Add(() =>
        {
            var c = new int[slots];
            var w = new float[slots];
            new ReadOnlySpan<int>((void*)staging, slots).CopyTo(c);
            new ReadOnlySpan<float>((void*)(staging + slots * 4), slots).CopyTo(w);
            onRouting(c, w);
        });
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

    // ---------------------------------------------------------------- graphs

    /// <summary>Compiles and loads every kernel now (module loading does not belong inside a graph capture).</summary>
    public void LoadAllKernels()
    {
        foreach (string source in CudaKernels.SourcesWithEntries)
            foreach (string kernel in CudaKernels.KernelNamesIn(source))
                Function(kernel);
    }

    /// <summary>
    /// Runs a decode step as one CUDA graph (<see cref="CudaGraphDecode"/>) when <see cref="CudaBackendOptions.UseGraphs"/>
    /// is on, eagerly otherwise or when the step cannot be captured (e.g. it downloads).
    /// </summary>
    public void RunDecodeStep(Action step)
    {
        ArgumentNullException.ThrowIfNull(step);
        if (!_options.UseGraphs)
        {
            step();
            return;
        }
        _decodeGraphs ??= new CudaGraphDecode(this);
        _decodeGraphs.Run(step);
    }

    internal void BeginCapture()
    {
        if (_capturing) throw new InvalidOperationException("a CUDA graph capture is already in progress");
        MakeCurrent();
        _driver.Check(_driver.cuStreamBeginCapture(_stream, CudaDriver.CaptureModeRelaxed), "cuStreamBeginCapture");
        _capturing = true;
        _afterSynchronizeAtCapture = _afterSynchronize.Count;
    }

    /// <summary>Forgets the host work queued by a capture that was abandoned (its device work never runs).</summary>
    internal void DiscardCapturedHostWork()
    {
        if (_afterSynchronize.Count > _afterSynchronizeAtCapture)
            _afterSynchronize.RemoveRange(_afterSynchronizeAtCapture, _afterSynchronize.Count - _afterSynchronizeAtCapture);
    }

    /// <summary>Ends the capture and returns the graph (0 when the capture was invalidated).</summary>
    internal nint EndCapture(bool throwOnError)
    {
        if (!_capturing) throw new InvalidOperationException("no CUDA graph capture in progress");
        _capturing = false;
        nint graph;
        int result = _driver.cuStreamEndCapture(_stream, &graph);
        if (throwOnError) _driver.Check(result, "cuStreamEndCapture");
        return result == 0 ? graph : 0;
    }

    // ---------------------------------------------------------------- helpers

    private void MakeCurrent()
    {
        if (t_currentContext == _context) return;
        _driver.Check(_driver.cuCtxSetCurrent(_context), "cuCtxSetCurrent");
        t_currentContext = _context;
    }

    private bool IsOurs(Tensor t) => t.Storage is CudaStorage s && ReferenceEquals(s.Owner, this);

    private void RequireOurs(Tensor t, string parameter)
    {
        if (!IsOurs(t)) throw new ArgumentException($"tensor {t} was not created by this CUDA backend", parameter);
    }

    private void RequireDeviceOutput(Tensor y)
    {
        if (!IsOurs(y)) throw new ArgumentException($"output {y} must be a tensor allocated by this CUDA backend (Allocate)", nameof(y));
        if (y.DType != DType.F32) throw new ArgumentException($"output {y} must be F32", nameof(y));
    }

    private static void RequireF32(Tensor t, string parameter)
    {
        if (t.DType != DType.F32) throw new ArgumentException($"{t} must be F32", parameter);
    }

    private static void SameLength(Tensor x, Tensor y, string op)
    {
        if (x.Length != y.Length) throw new ArgumentException($"{op}: {x} and {y} differ in size");
    }

    private static void CheckRows(ReadOnlySpan<int> rows, int limit, string op)
    {
        for (int i = 0; i < rows.Length; i++)
            if ((uint)rows[i] >= (uint)limit) throw new ArgumentOutOfRangeException(nameof(rows), $"{op}: row {rows[i]} (entry {i}) outside [0, {limit})");
    }

    /// <summary>Weights: our device tensors as they are, host tensors prepared once and remembered per storage.</summary>
    private Tensor ResolveWeight(Tensor t)
    {
        if (IsOurs(t)) return t;
        if (!t.IsHost) throw new ArgumentException($"tensor {t} lives on another device or backend");
        return Derived(t, t.DType.IsQuantized() ? (_options.MatrixDType ?? DType.F32) : t.DType, () => PrepareWeight(t));
    }

    /// <summary>Activation inputs: our device tensors as they are; host tensors are uploaded for this call only.</summary>
    private Tensor Input(Tensor t)
    {
        if (IsOurs(t)) return t;
        if (!t.IsHost) throw new ArgumentException($"tensor {t} lives on another device or backend");
        if (t.DType == DType.I8) return ResolveWeight(t);
        var copy = new Tensor(NewStorage(t.ByteLength), 0, t.DType, t.Shape, t.Name);
        CopyHostToDevice(t.Data, copy.Data, t.ByteLength);
        GC.KeepAlive(t);
        return copy;
    }

    /// <summary>An F32 view of a device tensor: itself, or a converted copy cached for as long as its storage lives.</summary>
    private Tensor AsF32(Tensor t)
    {
        if (t.DType == DType.F32) return t;
        return Derived(t, DType.F32, () =>
        {
            var result = Allocate(DType.F32, t.Shape.ToArray());
            string kernel = t.DType switch
            {
                DType.BF16 => "convert_bf16_to_f32",
                DType.F16 => "convert_f16_to_f32",
                _ => throw new ArgumentException($"{t} cannot be read as F32 on the device"),
            };
            Launch1D(kernel, t.Length, t, result, t.Length);
            return result;
        });
    }

    private Tensor Derived(Tensor t, DType dtype, Func<Tensor> create)
    {
        var perStorage = _derived.GetOrCreateValue(t.Storage);
        var key = (t.ByteOffset, t.Length, dtype);
        if (perStorage.TryGetValue(key, out var cached) && cached.Shape.SequenceEqual(t.Shape)) return cached;
        var made = create();
        perStorage[key] = made;
        return made;
    }

    private void CopyHostToDevice(nint host, nint device, long bytes)
    {
        MakeCurrent();
        if (bytes == 0) return;
        if (_capturing || bytes <= 64 * 1024)
        {
            nint staging = _arena.Take(bytes);
            Buffer.MemoryCopy((void*)host, (void*)staging, bytes, bytes);
            _driver.Check(_driver.cuMemcpyHtoDAsync(device, (void*)staging, (nuint)bytes, _stream), "cuMemcpyHtoDAsync");
            return;
        }
        // Pageable source: the driver stages it before returning, so the caller may reuse it at once.
        _driver.Check(_driver.cuMemcpyHtoDAsync(device, (void*)host, (nuint)bytes, _stream), "cuMemcpyHtoDAsync");
    }

    private void CopyDeviceToDevice(nint source, nint destination, long bytes)
    {
        MakeCurrent();
        if (bytes == 0) return;
        _driver.Check(_driver.cuMemcpyDtoDAsync(destination, source, (nuint)bytes, _stream), "cuMemcpyDtoDAsync");
    }

    /// <summary>
    /// A small host array copied to a device scratch block through the pinned arena; the caller disposes the
    /// block after queueing the kernel that reads it (stream order then protects the reuse).
    /// </summary>
    private Scratch UploadSmall(ReadOnlySpan<byte> bytes)
    {
        MakeCurrent();
        nint staging = _arena.Take(bytes.Length);
        bytes.CopyTo(new Span<byte>((void*)staging, bytes.Length));
        var device = NewScratch(bytes.Length);
        _driver.Check(_driver.cuMemcpyHtoDAsync(device.Pointer, (void*)staging, (nuint)bytes.Length, _stream), "cuMemcpyHtoDAsync");
        return device;
    }

    private void ThrowIfCapturing(string operation)
    {
        if (_capturing)
            throw new GraphCaptureException($"{operation} needs the host to wait for the GPU, which a CUDA graph capture cannot contain; run this step eagerly");
    }

    private nint Function(string kernel)
    {
        if (_functions.TryGetValue(kernel, out nint function)) return function;
        string sourceName = CudaKernels.SourceOf(kernel);
        if (!_modules.TryGetValue(sourceName, out nint module))
        {
            string source = KernelSources.Load(sourceName);
            var options = CudaKernels.CompileOptions(KernelArchitecture);
            var key = new KernelCacheKey(sourceName, source, KernelArchitecture, options, _nvrtc.Version.ToString(), KernelsAreCubin);
            byte[] image = _kernelCache.GetOrCompile(key, () => _nvrtc.Compile(source, sourceName, options, KernelsAreCubin).Image);
            fixed (byte* p = image)
            {
                int result = _driver.cuModuleLoadData(&module, p);
                if (result != 0)
                    throw new CudaException("cuModuleLoadData", result,
                        $"{_driver.Describe(result)} loading {sourceName} built for {KernelArchitecture} by NVRTC {_nvrtc.Version} ({_nvrtc.LibraryPath}); " +
                        "a PTX newer than the driver supports needs an older NVRTC (set MOE_CUDA_LIB_DIRS)");
            }
            _modules[sourceName] = module;
        }
        var name = System.Text.Encoding.ASCII.GetBytes(kernel + "\0");
        fixed (byte* n = name) _driver.Check(_driver.cuModuleGetFunction(&function, module, n), "cuModuleGetFunction " + kernel);
        _functions[kernel] = function;
        return function;
    }

    private void Launch1D(string kernel, long elements, params ReadOnlySpan<KernelArg> args)
    {
        if (elements == 0) return;
        long blocks = Math.Min((elements + ElementwiseBlock - 1) / ElementwiseBlock, (long)Multiprocessors * 32);
        Launch(kernel, (uint)Math.Max(1, blocks), 1, 1, ElementwiseBlock, 0, args);
    }

    private void Launch(string kernel, uint gridX, uint gridY, uint gridZ, uint block, uint sharedBytes, params ReadOnlySpan<KernelArg> args)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        MakeCurrent();
        nint function = Function(kernel);
        if (sharedBytes > 48 * 1024)
            _driver.Check(_driver.cuFuncSetAttribute(function, CudaDriver.FunctionAttributeMaxDynamicSharedSizeBytes, (int)sharedBytes), "cuFuncSetAttribute");
        long* values = stackalloc long[Math.Max(1, args.Length)];
        void** pointers = stackalloc void*[Math.Max(1, args.Length)];
        for (int i = 0; i < args.Length; i++)
        {
            values[i] = args[i].Bits;
            pointers[i] = &values[i];
        }
        _driver.Check(_driver.cuLaunchKernel(function, gridX, gridY, gridZ, block, 1, 1, sharedBytes, _stream, pointers, null), "cuLaunchKernel " + kernel);
    }

    public void Dispose()
    {
        if (_disposed) return;
        if (_capturing) EndCapture(throwOnError: false);
        _decodeGraphs?.Dispose();
        _afterSynchronize.Clear();
        MakeCurrent();
        _driver.cuStreamSynchronize(_stream);
        _disposed = true;
        _cublas.cublasDestroy(_cublasHandle);
        foreach (nint module in _modules.Values) _driver.cuModuleUnload(module);
        _modules.Clear();
        _functions.Clear();
        _allocator.Dispose();
        _arena.Dispose();
        _driver.cuStreamDestroy(_stream);
        _driver.cuDevicePrimaryCtxRelease(_device);
        t_currentContext = 0;
    }
}

/// <summary>One kernel argument as the 8 bytes cuLaunchKernel reads from (4-byte ints and floats in the low half).</summary>
internal readonly struct KernelArg
{
    private KernelArg(long bits) => Bits = bits;
    public long Bits { get; }
    public static KernelArg Pointer(nint pointer) => new(pointer);
    public static implicit operator KernelArg(int value) => new((uint)value);
    public static implicit operator KernelArg(long value) => new(value);
    public static implicit operator KernelArg(float value) => new(BitConverter.SingleToUInt32Bits(value));
    public static implicit operator KernelArg(Tensor tensor) => new(tensor.Data);
}
