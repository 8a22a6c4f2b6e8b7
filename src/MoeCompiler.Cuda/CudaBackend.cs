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
public sealed unsafe partial class CudaBackend : IBackend, IDeviceMoeBackend
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
