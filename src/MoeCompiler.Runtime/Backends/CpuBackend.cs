using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.Runtime.Threading;

namespace MoeCompiler.Runtime.Backends;

/// <summary>
/// The CPU backend: host tensors, a persistent worker pool sized to the cores, vectorised kernels.
/// Results are bitwise independent of the thread count. Calls from several threads are serialised.
/// </summary>
public sealed unsafe partial class CpuBackend : IBackend
{
    private static readonly Lazy<CpuBackend> s_shared = new(() => new CpuBackend(null, KernelIsaSupport.Default, isShared: true));

    private readonly WorkerPool _pool;
    private readonly ScratchBuffers _scratch;
    private readonly object _gate = new();
    private readonly bool _isShared;
    private bool _disposed;

    private readonly KernelIsa _isa;

    /// <param name="threads">Pool size, the caller's thread included; default: one per core.</param>
    public CpuBackend(int? threads = null) : this(threads, KernelIsaSupport.Default, isShared: false)
    {
    }

    /// <summary>A backend forced onto one instruction-set path (tests, benchmarks).</summary>
    public CpuBackend(int? threads, KernelIsa isa) : this(threads, isa, isShared: false)
    {
    }

    private CpuBackend(int? threads, KernelIsa isa, bool isShared)
    {
        int count = threads ?? Environment.ProcessorCount;
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1, nameof(threads));
        if (!KernelIsaSupport.IsSupported(isa)) throw new PlatformNotSupportedException($"this CPU supports at most {KernelIsaSupport.Best}, not {isa}");
        _isa = isa;
        _pool = new WorkerPool(count);
        _scratch = new ScratchBuffers(count);
        _isShared = isShared;
    }

    /// <summary>A process-wide backend using every core; disposing it does nothing.</summary>
    public static CpuBackend Shared => s_shared.Value;

    public string Name => $"cpu ({_pool.Threads} threads, {_isa})";

    /// <summary>f32 weights keep an exact f32 cache; bf16 (or quantised) weights get a bf16 cache, as PyTorch keeps
    /// keys and values in the model's dtype: rounding them costs less than the weights' own rounding already did.</summary>
    public DType KvCacheDType(DType weightDType) => weightDType == DType.F32 ? DType.F32 : DType.BF16;
    public KernelIsa Isa => _isa;
    public int Threads => _pool.Threads;

    public void Dispose()
    {
        if (_isShared) return;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _pool.Dispose();
            _scratch.Dispose();
        }
    }

    public Tensor Allocate(DType dtype, params int[] shape) => Tensor.Allocate(dtype, shape);

    /// <summary>
    /// Whether bf16 Linear weights get a lossless packed copy at bind time (<see cref="PrepareLinearWeight"/>):
    /// 12 bits per value instead of 16, so decode streams a quarter fewer bytes. AVX-512 only; on by default.
    /// </summary>
    public bool PackBF16Weights { get; init; } = true;

    /// <summary>
    /// Decode products (≤ 4 activation rows, and every row of <see cref="LinearRows"/>) with grouped int8 or q4 weights
    /// quantise each activation row to int8, one f32 scale per group of 32, and sum exact integer dot products
    /// (AvxVnni <c>vpdpbusd</c>), as llama.cpp runs Q8_0/Q4_0; off, the activations stay f32 and the weights are
    /// widened to f32. Default: <see cref="IntegerDotDecodeDefault"/>, which <c>MOE_INT_DOT=0|1</c> overrides.
    /// docs/quantization.md ("Kernels", "Fidelity") has the measured speed and error of both.
    /// </summary>
    public bool IntegerDotDecode { get; init; } = IntegerDotDecodeDefault;

    /// <summary>The default of <see cref="IntegerDotDecode"/>: on, unless <c>MOE_INT_DOT=0</c>.</summary>
    public static bool IntegerDotDecodeDefault => Environment.GetEnvironmentVariable("MOE_INT_DOT") switch
    {
        null or "" => true,
        "0" or "false" or "off" => false,
        "1" or "true" or "on" => true,
        var other => throw new InvalidOperationException($"MOE_INT_DOT={other}: expected 0 or 1"),
    };

    /// <summary>
    /// Prefill and vision products (more than 4 activation rows) with grouped int8 or q4 weights quantise the
    /// activations as decode does and run the integer GEMM (AvxVnni <c>vpdpbusd</c>; without AvxVnni, or on the
    /// scalar path, they dequantise weight panels to f32 for the f32 GEMM as when this is off). Default:
    /// <see cref="IntegerGemmPrefillDefault"/>, which <c>MOE_INT_GEMM=0|1</c> overrides. docs/quantization.md
    /// ("Speed") has the measurement.
    /// </summary>
    public bool IntegerGemmPrefill { get; init; } = IntegerGemmPrefillDefault;

    /// <summary>The default of <see cref="IntegerGemmPrefill"/>: on, unless <c>MOE_INT_GEMM=0</c>.</summary>
    public static bool IntegerGemmPrefillDefault => Environment.GetEnvironmentVariable("MOE_INT_GEMM") switch
    {
        null or "" => true,
        "0" or "false" or "off" => false,
        "1" or "true" or "on" => true,
        var other => throw new InvalidOperationException($"MOE_INT_GEMM={other}: expected 0 or 1"),
    };

    /// <summary>Whether the integer dots use AvxVnni (the default where the CPU has it); tests turn it off to run the
    /// AVX2 <c>vpmaddubsw</c> + <c>vpmaddwd</c> fallback.</summary>
    internal bool Vnni { get; init; } = AvxVnni.IsSupported;

    /// <summary>
    /// <see cref="PrepareWeight"/>, then for a bf16 matrix (AVX-512, <see cref="PackBF16Weights"/>) the packed copy that
    /// <see cref="Linear"/> streams instead of the bf16 values. The returned tensor still reads as the original values;
    /// the copy is freed with the original's storage, and a memory-mapped original's pages stop counting as resident.
    /// </summary>
    public Tensor PrepareLinearWeight(Tensor weight)
    {
        var prepared = PrepareWeight(weight);
        if (!PackBF16Weights || _isa != KernelIsa.Avx512 || prepared.DType != DType.BF16 || prepared.Rank != 2 ||
            prepared.Columns < PackedBF16.Block || prepared.Storage is PackedWeightStorage)
            return prepared;
        lock (_gate)
        {
            if (PackedWeightStorage.Pack(prepared, _pool) is not { } packed) return prepared;
            var layout = ((PackedWeightStorage)packed.Storage).Packed;
            _packing = new PackingTotals(_packing.Weights + 1, _packing.SourceBytes + prepared.Length * 2,
                _packing.PackedBytes + layout.StreamedBytes, _packing.Exceptions + layout.Exceptions);
            return packed;
        }
    }

    private PackingTotals _packing;

    /// <summary>What <see cref="PrepareLinearWeight"/> has packed so far: weights, their bf16 bytes, the bytes a pass over
    /// the packed copies reads, and the values kept as exceptions.</summary>
    public PackingTotals Packing
    {
        get { lock (_gate) return _packing; }
    }

    /// <summary>Uses weights in place; small vectors (norm weights, biases) of other dtypes become f32 copies.</summary>
    public Tensor PrepareWeight(Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        RequireHost(weight);
        Int8Quantization.Validate(weight);
        if (weight.Rank <= 1 && weight.DType != DType.F32)
        {
            var copy = Tensor.Allocate(DType.F32, weight.Shape.ToArray());
            weight.ToFloatArray().CopyTo(copy.AsFloats());
            return copy;
        }
        return weight;
    }

    public void Upload(ReadOnlySpan<float> source, Tensor destination)
    {
        RequireF32(destination, nameof(destination));
        if (source.Length != destination.Length) throw new ArgumentException($"{source.Length} values for {destination}");
        source.CopyTo(destination.AsFloats());
        KeepAlive(destination);
    }

    public void Download(Tensor source, Span<float> destination)
    {
        RequireHost(source);
        if (destination.Length != source.Length) throw new ArgumentException($"{destination.Length} slots for {source}");
        if (source.DType == DType.F32) source.AsFloats().CopyTo(destination);
        else source.ToFloatArray().CopyTo(destination);
        KeepAlive(source);
    }

    public void Copy(Tensor source, Tensor destination)
    {
        RequireHost(source);
        RequireHost(destination);
        if (source.DType != destination.DType || source.Length != destination.Length)
            throw new ArgumentException($"cannot copy {source} to {destination}");
        Buffer.MemoryCopy((void*)source.Data, (void*)destination.Data, destination.ByteLength, source.ByteLength);
        KeepAlive(source, destination);
    }

    public void CopyRows(Tensor source, int sourceRow, Tensor destination, int destinationRow, int count)
    {
        RequireHost(source);
        RequireHost(destination);
        bool narrow = source.DType == DType.F32 && destination.DType == DType.BF16;
        if ((source.DType != destination.DType && !narrow) || source.Columns != destination.Columns)
            throw new ArgumentException($"cannot copy rows of {source} to {destination}");
        CheckRowRange(source, sourceRow, count);
        CheckRowRange(destination, destinationRow, count);
        RequireWritable(destination);
        if (narrow)
        {
            long values = (long)count * source.Columns;
            Narrow.F32ToBF16(_isa, (float*)source.Data + (long)sourceRow * source.Columns,
                (ushort*)destination.Data + (long)destinationRow * destination.Columns, values);
        }
        else
        {
            long rowBytes = (long)source.Columns * source.DType.SizeInBytes();
            Buffer.MemoryCopy((byte*)source.Data + sourceRow * rowBytes, (byte*)destination.Data + destinationRow * rowBytes,
                count * rowBytes, count * rowBytes);
        }
        KeepAlive(source, destination);
    }

    public void Add(Tensor a, Tensor b, Tensor y)
    {
        RequireSameF32(a, b, y);
        RunElementwise(Elementwise.Op.Add, a, b, y, 0);
    }

    public void Multiply(Tensor a, Tensor b, Tensor y)
    {
        RequireSameF32(a, b, y);
        RunElementwise(Elementwise.Op.Multiply, a, b, y, 0);
    }

    public void Scale(Tensor x, float scale, Tensor y)
    {
        RequireSameF32(x, x, y);
        RunElementwise(Elementwise.Op.Scale, x, x, y, scale);
    }

    // The activation enum is the backend seam's (generated code names it); the kernels only know their own ops.
    private static Elementwise.Op ElementwiseOp(Activation activation) => activation switch
    {
        Activation.GeluErf => Elementwise.Op.GeluErf,
        Activation.GeluTanh => Elementwise.Op.GeluTanh,
        Activation.QuickGelu => Elementwise.Op.QuickGelu,
        Activation.Silu => Elementwise.Op.Silu,
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    public void Activate(Tensor x, Activation activation, Tensor y)
    {
        RequireSameF32(x, x, y);
        RunElementwise(ElementwiseOp(activation), x, x, y, 0);
    }

    public void SwiGlu(Tensor gate, Tensor up, Tensor y)
    {
        RequireSameF32(gate, up, y);
        RunElementwise(Elementwise.Op.SwiGlu, gate, up, y, 0);
    }

    private void RunElementwise(Elementwise.Op op, Tensor a, Tensor b, Tensor y, float scale)
    {
        RequireWritable(y);
        long n = y.Length;
        var job = new ElementwiseJob { Op = op, Isa = _isa, A = (float*)a.Data, B = (float*)b.Data, Y = (float*)y.Data, N = n, Scale = scale };
        _pool.Run((int)((n + ElementwiseJob.Chunk - 1) / ElementwiseJob.Chunk), ref job);
        KeepAlive(a, b, y);
    }

    private struct ElementwiseJob : IParallelJob
    {
        public const int Chunk = 1 << 15;
        public Elementwise.Op Op;
        public KernelIsa Isa;
        public float* A, B, Y;
        public long N;
        public float Scale;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int index, int worker)
        {
            long start = (long)index * Chunk;
            int count = (int)Math.Min(Chunk, N - start);
            Elementwise.Apply(Op, Isa, A + start, B + start, Y + start, count, Scale);
        }
    }

    public void GatherRows(Tensor source, ReadOnlySpan<int> rows, Tensor destination)
    {
        RequireF32(source, nameof(source));
        RequireF32(destination, nameof(destination));
        int width = source.Columns;
        if (destination.Columns != width || destination.Rows != rows.Length)
            throw new ArgumentException($"gathering {rows.Length} rows of {source} into {destination}");
        var s = source.AsFloats();
        var d = destination.AsFloats();
        for (int i = 0; i < rows.Length; i++)
        {
            CheckIndex(rows[i], source.Rows, "row", source);
            s.Slice(rows[i] * width, width).CopyTo(d.Slice(i * width, width));
        }
        KeepAlive(source, destination);
    }

    public void ScatterAddRows(Tensor source, ReadOnlySpan<int> rows, ReadOnlySpan<float> weights, Tensor destination)
    {
        RequireF32(source, nameof(source));
        RequireF32(destination, nameof(destination));
        int width = source.Columns;
        if (destination.Columns != width || source.Rows != rows.Length || weights.Length != rows.Length)
            throw new ArgumentException($"scattering {rows.Length} rows ({weights.Length} weights) of {source} into {destination}");
        var s = source.AsFloats();
        var d = destination.AsFloats();
        for (int i = 0; i < rows.Length; i++)
        {
            CheckIndex(rows[i], destination.Rows, "row", destination);
            var target = d.Slice(rows[i] * width, width);
            TensorPrimitives.MultiplyAdd(s.Slice(i * width, width), weights[i], target, target);
        }
        KeepAlive(source, destination);
    }

    public void Embedding(Tensor table, ReadOnlySpan<int> ids, Tensor y)
    {
        RequireHost(table);
        RequireF32(y, nameof(y));
        int width = table.Columns;
        if (y.Columns != width || y.Rows != ids.Length) throw new ArgumentException($"embedding {ids.Length} ids of {table} into {y}");
        var output = y.AsFloats();
        for (int i = 0; i < ids.Length; i++)
        {
            CheckIndex(ids[i], table.Rows, "token id", table);
            NumberFormats.ReadRow(table, ids[i], output.Slice(i * width, width));
        }
        KeepAlive(table, y);
    }

    // ---- lifetime ---------------------------------------------------------------------------------------------

    /// <summary>
    /// Called by every operation after its last read or write of its tensors' memory. A tensor's native memory is freed
    /// by its storage's finalizer once nothing references it, and optimised code stops referencing an argument after
    /// its last use in the method, which is where its pointer or span is taken, not where the kernel is done with it.
    /// A temporary passed as an argument would otherwise be freed (and reused) while the kernel still reads it. The same
    /// holds for this backend, whose scratch buffers a finalizer frees.
    /// </summary>
    private void KeepAlive(Tensor? a, Tensor? b = null, Tensor? c = null, Tensor? d = null)
    {
        GC.KeepAlive(this);
        GC.KeepAlive(a);
        GC.KeepAlive(b);
        GC.KeepAlive(c);
        GC.KeepAlive(d);
    }

    // ---- validation -------------------------------------------------------------------------------------------

    private static void RequireHost(Tensor t)
    {
        ArgumentNullException.ThrowIfNull(t);
        if (!t.IsHost) throw new ArgumentException($"tensor {t} is not in host memory");
        if (t.Storage.IsDisposed) throw new ObjectDisposedException($"storage of tensor {t}");
    }

    private static void RequireF32(Tensor t, string what)
    {
        RequireHost(t);
        if (t.DType != DType.F32) throw new ArgumentException($"{what} {t} must be F32");
    }

    private static void RequireSameF32(Tensor a, Tensor b, Tensor y)
    {
        RequireF32(a, nameof(a));
        RequireF32(b, nameof(b));
        RequireF32(y, nameof(y));
        if (a.Length != b.Length || a.Length != y.Length) throw new ArgumentException($"sizes differ: {a}, {b}, {y}");
    }

    private static void RequireWritable(Tensor t)
    {
        if (t.Storage.IsReadOnly) throw new ArgumentException($"tensor {t} is read-only");
    }

    /// <summary>Kernels that read an input after writing parts of the output need them apart.</summary>
    private static void RequireDisjoint(Tensor input, Tensor output, string operation)
    {
        long a = input.Data, b = output.Data;
        if (a < b + output.ByteLength && b < a + input.ByteLength && input.ByteLength > 0 && output.ByteLength > 0)
            throw new ArgumentException($"{operation}: output {output} overlaps input {input}; use a separate buffer");
    }

    private static void CheckRowRange(Tensor t, int start, int count)
    {
        if (start < 0 || count < 0 || (long)start + count > t.Rows)
            throw new ArgumentOutOfRangeException(nameof(start), $"rows [{start}, {start + count}) outside {t}");
    }

    private static void CheckIndex(int index, int limit, string what, Tensor t)
    {
        if ((uint)index >= (uint)limit) throw new ArgumentOutOfRangeException(what, $"{what} {index} outside [0, {limit}) of {t}");
    }
}

/// <summary>Totals of the CPU backend's packed bf16 weights (<see cref="CpuBackend.Packing"/>).</summary>
public readonly record struct PackingTotals(int Weights, long SourceBytes, long PackedBytes, long Exceptions)
{
    /// <summary>Packed bytes per bf16 byte (0 when nothing is packed).</summary>
    public double Ratio => SourceBytes == 0 ? 0 : (double)PackedBytes / SourceBytes;
}
