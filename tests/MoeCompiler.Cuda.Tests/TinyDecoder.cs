using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Cuda.Tests;

/// <summary>
/// A tiny sparse-MoE decoder written only against <see cref="IBackend"/> (embedding → [RMSNorm → GQA attention
/// with rotary over a KV cache → RMSNorm → top-k MoE of SwiGLU experts, dispatched and combined row-wise] × L →
/// final norm → LM head), so the same forward runs on any backend. Routing runs on the host from downloaded
/// router logits, as the MoE modules do. Stands in for the generated tiny variants in GPU parity tests until those
/// are merged; the random weights are rounded to bf16 once and shared by both backends.
/// </summary>
internal sealed class TinyDecoder
{
    public const int Vocab = 96, Hidden = 64, Heads = 4, KvHeads = 2, HeadDim = 16, Layers = 2, Experts = 4, TopK = 2, FfnHidden = 96, Capacity = 64;
    private const float Theta = 10000f, Epsilon = 1e-5f;

    private readonly IBackend _b;
    private readonly Tensor _embedding, _finalNorm, _lmHead;
    private readonly Layer[] _layers;
    private readonly Tensor[] _keys, _values;
    private int _length;

    private sealed record Layer(Tensor Norm1, Tensor Q, Tensor K, Tensor V, Tensor O, Tensor Norm2, Tensor Router, Tensor[] Gate, Tensor[] Up, Tensor[] Down);

    /// <summary>Per forward call, per layer: the chosen experts of every row, [rows·TopK], and the router logits.</summary>
    public List<(int[] Experts, float[] RouterLogits)> Routing { get; } = new();

    public TinyDecoder(IBackend backend, int seed)
    {
        _b = backend;
        int next = seed;
        Tensor W(float scale, params int[] shape)
        {
            int count = shape.Aggregate(1, (a, d) => a * d);
            return _b.PrepareWeight(TestData.HostTensor(TestData.Random(count, next++, scale), DType.BF16, shape));
        }
        Tensor Ones(int n) => _b.PrepareWeight(Tensor.FromFloats(TestData.Random(n, next++, 0.2f).Select(v => 1 + v).ToArray(), n));
        _embedding = W(1f, Vocab, Hidden);
        _layers = new Layer[Layers];
        for (int l = 0; l < Layers; l++)
        {
            _layers[l] = new Layer(Ones(Hidden), W(0.25f, Heads * HeadDim, Hidden), W(0.25f, KvHeads * HeadDim, Hidden), W(0.25f, KvHeads * HeadDim, Hidden),
                W(0.25f, Hidden, Heads * HeadDim), Ones(Hidden), W(0.5f, Experts, Hidden),
                Enumerable.Range(0, Experts).Select(_ => W(0.25f, FfnHidden, Hidden)).ToArray(),
                Enumerable.Range(0, Experts).Select(_ => W(0.25f, FfnHidden, Hidden)).ToArray(),
                Enumerable.Range(0, Experts).Select(_ => W(0.25f, Hidden, FfnHidden)).ToArray());
        }
        _finalNorm = Ones(Hidden);
        _lmHead = W(0.25f, Vocab, Hidden);
        _keys = Enumerable.Range(0, Layers).Select(_ => _b.Allocate(DType.F32, Capacity, KvHeads * HeadDim)).ToArray();
        _values = Enumerable.Range(0, Layers).Select(_ => _b.Allocate(DType.F32, Capacity, KvHeads * HeadDim)).ToArray();
    }

    /// <summary>Runs the tokens at the current cache position and returns the logits of the last one.</summary>
    public float[] Forward(int[] tokens)
    {
        int t = tokens.Length, start = _length;
        var x = _b.Allocate(DType.F32, t, Hidden);
        _b.Embedding(_embedding, tokens, x);
        for (int l = 0; l < Layers; l++)
        {
            var layer = _layers[l];
            var h = _b.Allocate(DType.F32, t, Hidden);
            _b.RmsNorm(x, layer.Norm1, Epsilon, h);
            var q = _b.Allocate(DType.F32, t, Heads * HeadDim);
            var k = _b.Allocate(DType.F32, t, KvHeads * HeadDim);
            var v = _b.Allocate(DType.F32, t, KvHeads * HeadDim);
            _b.Linear(h, layer.Q, null, q);
            _b.Linear(h, layer.K, null, k);
            _b.Linear(h, layer.V, null, v);
            _b.Rotary(q, Heads, HeadDim, HeadDim, Theta, start);
            _b.Rotary(k, KvHeads, HeadDim, HeadDim, Theta, start);
            _b.CopyRows(k, 0, _keys[l], start, t);
            _b.CopyRows(v, 0, _values[l], start, t);
            var attention = _b.Allocate(DType.F32, t, Heads * HeadDim);
            _b.Attention(q, _keys[l].SliceRows(0, start + t), _values[l].SliceRows(0, start + t), attention, Heads, KvHeads, HeadDim, true, start);
            var projected = _b.Allocate(DType.F32, t, Hidden);
            _b.Linear(attention, layer.O, null, projected);
            _b.Add(x, projected, x);

            _b.RmsNorm(x, layer.Norm2, Epsilon, h);
            var routerLogits = _b.Allocate(DType.F32, t, Experts);
            _b.Linear(h, layer.Router, null, routerLogits);
            var logits = new float[t * Experts];
            _b.Download(routerLogits, logits);
            int[] chosen = new int[t * TopK];
            float[] weights = new float[t * TopK];
            Route(logits, t, chosen, weights);
            Routing.Add((chosen, logits));
            var moe = _b.Allocate(DType.F32, t, Hidden);
            _b.Scale(x, 0f, moe);
            for (int e = 0; e < Experts; e++)
            {
                var rows = new List<int>();
                var rowWeights = new List<float>();
                for (int i = 0; i < t * TopK; i++)
                    if (chosen[i] == e) { rows.Add(i / TopK); rowWeights.Add(weights[i]); }
                if (rows.Count == 0) continue;
                int n = rows.Count;
                var gathered = _b.Allocate(DType.F32, n, Hidden);
                _b.GatherRows(h, rows.ToArray(), gathered);
                var gate = _b.Allocate(DType.F32, n, FfnHidden);
                var up = _b.Allocate(DType.F32, n, FfnHidden);
                _b.Linear(gathered, layer.Gate[e], null, gate);
                _b.Linear(gathered, layer.Up[e], null, up);
                _b.SwiGlu(gate, up, gate);
                var down = _b.Allocate(DType.F32, n, Hidden);
                _b.Linear(gate, layer.Down[e], null, down);
                _b.ScatterAddRows(down, rows.ToArray(), rowWeights.ToArray(), moe);
            }
            _b.Add(x, moe, x);
        }
        _length += t;
        var last = _b.Allocate(DType.F32, 1, Hidden);
        _b.CopyRows(x, t - 1, last, 0, 1);
        _b.RmsNorm(last, _finalNorm, Epsilon, last);
        var output = _b.Allocate(DType.F32, 1, Vocab);
        _b.Linear(last, _lmHead, null, output);
        var result = new float[Vocab];
        _b.Download(output, result);
        return result;
    }

    /// <summary>Mixtral routing: softmax over experts, top-k (ties to the lower index), renormalised.</summary>
    private static void Route(float[] logits, int rows, int[] chosen, float[] weights)
    {
        for (int r = 0; r < rows; r++)
        {
            var row = logits.AsSpan(r * Experts, Experts).ToArray();
            var order = Enumerable.Range(0, Experts).OrderByDescending(e => row[e]).ThenBy(e => e).Take(TopK).ToArray();
            double max = row.Max();
            double total = order.Sum(e => Math.Exp(row[e] - max));
            for (int j = 0; j < TopK; j++)
            {
                chosen[r * TopK + j] = order[j];
                weights[r * TopK + j] = (float)(Math.Exp(row[order[j]] - max) / total);
            }
        }
    }

    public static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}
