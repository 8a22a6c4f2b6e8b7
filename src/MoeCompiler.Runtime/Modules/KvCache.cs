using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

/// <summary>
/// Per-layer keys and values [capacity, kvHeads·headDim], filled row by row as tokens are decoded; f32, or bf16
/// (rows rounded to nearest even as they are stored) where the backend supports it.
/// </summary>
public sealed class KvCache
{
    private readonly Tensor[] _keys;
    private readonly Tensor[] _values;

    public KvCache(IBackend backend, int layers, int capacity, int kvWidth, DType dtype = DType.F32)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (dtype is not (DType.F32 or DType.BF16))
            throw new ArgumentException($"a KV cache holds f32 or bf16 rows, not {dtype}", nameof(dtype));
        Capacity = capacity;
        DType = dtype;
        _keys = new Tensor[layers];
        _values = new Tensor[layers];
        for (int i = 0; i < layers; i++)
        {
            _keys[i] = backend.Allocate(dtype, capacity, kvWidth);
            _values[i] = backend.Allocate(dtype, capacity, kvWidth);
        }
    }

    public int Capacity { get; }
    public DType DType { get; }
    public int Layers => _keys.Length;
    /// <summary>Width of one cached row (kvHeads·headDim).</summary>
    public int KvWidth => _keys.Length == 0 ? 0 : _keys[0].Columns;
    /// <summary>Rows filled so far (the same for every layer once a forward call completes).</summary>
    public int Length { get; set; }

    public Tensor Keys(int layer) => _keys[layer];
    public Tensor Values(int layer) => _values[layer];
}
