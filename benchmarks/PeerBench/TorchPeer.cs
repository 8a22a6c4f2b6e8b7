using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PeerBench;

/// <summary>Shapes of MoeLlavaQwen4e (modelspecs/moellava-qwen-4e.json): Qwen-1 1.8B with MoE (4 experts, top-2)
/// on layers 0, 2, …, 22, CLIP ViT-L/14-336 tower (select layer −2, patch features), mlp2x_gelu projector.</summary>
public sealed record QwenMoeShape
{
    public int Hidden { get; init; } = 2048;
    public int Layers { get; init; } = 24;
    public int Heads { get; init; } = 16;
    public int HeadDim { get; init; } = 128;
    public int Ffn { get; init; } = 5504;
    public int Experts { get; init; } = 4;
    public int TopK { get; init; } = 2;
    public int Vocab { get; init; } = 151936;
    public int Eos { get; init; } = 151643;
    public double RopeTheta { get; init; } = 10000;
    public double RmsEps { get; init; } = 1e-6;
    public int ImageSize { get; init; } = 336;
    public int Patch { get; init; } = 14;
    public int VisionHidden { get; init; } = 1024;
    public int VisionLayers { get; init; } = 24;
    public int VisionHeads { get; init; } = 16;
    public int VisionMlp { get; init; } = 4096;

    public bool IsMoe(int layer) => layer % 2 == 0;
    public int ImageTokens => (ImageSize / Patch) * (ImageSize / Patch);

    public static QwenMoeShape Tiny { get; } = new()
    {
        Hidden = 256, Layers = 4, Heads = 4, HeadDim = 64, Ffn = 512, Vocab = 1024, Eos = 1000,
        ImageSize = 56, VisionHidden = 128, VisionLayers = 3, VisionHeads = 4, VisionMlp = 256,
    };
}

/// <summary>
/// libtorch 2.10 (TorchSharp-cpu 0.107.0) running MoeLlavaQwen4e's shapes with random bf16 weights: CLIP vision
/// tower + projector on one random image, one prefill of text + image rows with a KV cache, then greedy batch-1
/// decode. Written with plain libtorch ops as a PyTorch user would (F.linear on bf16 weights, which oneDNN runs with
/// AVX512-BF16 on this CPU, scaled_dot_product_attention, a loop over experts with index_select/index_add_ for the
/// MoE). Routing is softmax top-2 with the two weights renormalised (DeepSpeed's top-2 gate at inference, capacity
/// not enforced: at eval capacity factor 2 nothing is dropped for these lengths).
/// </summary>
public sealed class TorchPeer : IDecodingPeer
{
    private sealed class Layer
    {
        public required Tensor Norm1, Attn, AttnBias, AttnOut, Norm2;
        public Tensor? Router;
        public required Tensor[] W1, W2, Proj; // one per expert (one for a dense layer)
    }

    private sealed class VisionLayer
    {
        public required Tensor Ln1W, Ln1B, Qkv, QkvB, Out, OutB, Ln2W, Ln2B, Fc1, Fc1B, Fc2, Fc2B;
    }

    private readonly QwenMoeShape _s;
    private readonly Tensor _embed, _lmHead, _finalNorm, _cos, _sin;
    private readonly Layer[] _layers;
    private readonly Tensor[] _kCache, _vCache;
    private readonly Tensor _patchConv, _classEmbed, _posEmbed, _preLnW, _preLnB, _proj1, _proj1B, _proj2, _proj2B;
    private readonly VisionLayer[] _vision;
    private readonly List<Tensor> _all = [];
    private int _position, _last;

    private TorchPeer(QwenMoeShape s, int maxPositions)
    {
        _s = s;
        var g = new Generator(); // not used: torch's global generator is seeded in Run
        _ = g;
        int h = s.Hidden;
        _embed = W(s.Vocab, h, fanIn: 1);
        _lmHead = W(s.Vocab, h);
        _finalNorm = Ones(h);
        _layers = new Layer[s.Layers];
        for (int l = 0; l < s.Layers; l++)
        {
            int n = s.IsMoe(l) ? s.Experts : 1;
            _layers[l] = new Layer
            {
                Norm1 = Ones(h), Attn = W(3 * h, h), AttnBias = Keep(zeros(3 * h, dtype: bfloat16)), AttnOut = W(h, h), Norm2 = Ones(h),
                Router = s.IsMoe(l) ? Keep(empty(s.Experts, h, dtype: float32).uniform_(-1 / Math.Sqrt(h), 1 / Math.Sqrt(h))) : null,
                W1 = Enumerable.Range(0, n).Select(_ => W(s.Ffn, h)).ToArray(),
                W2 = Enumerable.Range(0, n).Select(_ => W(s.Ffn, h)).ToArray(),
                Proj = Enumerable.Range(0, n).Select(_ => W(h, s.Ffn)).ToArray(),
            };
        }
        int v = s.VisionHidden;
        _patchConv = Keep(empty(v, 3, s.Patch, s.Patch, dtype: bfloat16).uniform_(-0.05, 0.05));
        _classEmbed = W(1, v, fanIn: 1);
        _posEmbed = W(s.ImageTokens + 1, v, fanIn: 1);
        _preLnW = Ones(v);
        _preLnB = Keep(zeros(v, dtype: bfloat16));
        // select layer −2: the last layer's output is never used, so only Layers − 1 layers run (and exist).
        _vision = Enumerable.Range(0, s.VisionLayers - 1).Select(_ => new VisionLayer
        {
            Ln1W = Ones(v), Ln1B = Keep(zeros(v, dtype: bfloat16)), Qkv = W(3 * v, v), QkvB = Keep(zeros(3 * v, dtype: bfloat16)),
            Out = W(v, v), OutB = Keep(zeros(v, dtype: bfloat16)), Ln2W = Ones(v), Ln2B = Keep(zeros(v, dtype: bfloat16)),
            Fc1 = W(s.VisionMlp, v), Fc1B = Keep(zeros(s.VisionMlp, dtype: bfloat16)), Fc2 = W(v, s.VisionMlp), Fc2B = Keep(zeros(v, dtype: bfloat16)),
        }).ToArray();
        _proj1 = W(h, v);
        _proj1B = Keep(zeros(h, dtype: bfloat16));
        _proj2 = W(h, h);
        _proj2B = Keep(zeros(h, dtype: bfloat16));

        // Rotary tables (Qwen-1: rotate_half over the full head dimension), f32 [positions, headDim].
        var inv = Keep(1.0 / pow(s.RopeTheta, arange(0, s.HeadDim, 2, dtype: float64) / s.HeadDim));
        var angles = outer(arange(maxPositions, dtype: float64), inv);
        var full = cat([angles, angles], 1);
        _cos = Keep(full.cos().to(float32));
        _sin = Keep(full.sin().to(float32));
        _kCache = Enumerable.Range(0, s.Layers).Select(_ => Keep(zeros(s.Heads, maxPositions, s.HeadDim, dtype: bfloat16))).ToArray();
        _vCache = Enumerable.Range(0, s.Layers).Select(_ => Keep(zeros(s.Heads, maxPositions, s.HeadDim, dtype: bfloat16))).ToArray();
    }

    private Tensor Keep(Tensor t)
    {
        _all.Add(t);
        return t;
    }

    private Tensor W(long rows, long cols, double? fanIn = null)
    {
        double a = Math.Sqrt(3.0 / (fanIn ?? cols));
        return Keep(empty(rows, cols, dtype: bfloat16).uniform_(-a, a));
    }

    private Tensor Ones(long n) => Keep(ones(n, dtype: bfloat16));

    public static int Run(int textTokens, int decode, int threads, ulong seed, bool tiny, bool withVision, int? layers)
    {
        var s = tiny ? QwenMoeShape.Tiny : new QwenMoeShape();
        if (layers is { } n) s = s with { Layers = n, VisionLayers = Math.Min(s.VisionLayers, n) };
        torch.set_num_threads(threads);
        torch.manual_seed((long)seed);
        using var noGrad = torch.no_grad();
        int imageRows = withVision ? s.ImageTokens : 0;
        int promptRows = textTokens + imageRows;
        long loadStart = Stopwatch.GetTimestamp();
        using var peer = new TorchPeer(s, promptRows + decode + 1);
        double loadSeconds = Stopwatch.GetElapsedTime(loadStart).TotalSeconds;
        long loadedKiB = PeerProtocol.ResidentKiB();
        int[] text = PeerProtocol.Prompt(textTokens, s.Eos, s.Eos, seed);

        double visionSeconds = 0;
        Tensor? image = null;
        using var scope = torch.NewDisposeScope();
        if (withVision)
        {
            var pixels = rand(1, 3, s.ImageSize, s.ImageSize, dtype: bfloat16);
            long v0 = Stopwatch.GetTimestamp();
            image = peer.Vision(pixels);
            visionSeconds = Stopwatch.GetElapsedTime(v0).TotalSeconds;
        }
        long p0 = Stopwatch.GetTimestamp();
        int first = peer.Prefill(text, image);
        double prefillSeconds = Stopwatch.GetElapsedTime(p0).TotalSeconds;
        var ready = new Dictionary<string, object>
        {
            ["info"] = $"libtorch {torch.__version__} via TorchSharp 0.107.0, bf16, {torch.get_num_threads()} threads",
            ["load_s"] = loadSeconds, ["vision_s"] = visionSeconds, ["prefill_s"] = prefillSeconds, ["prompt_rows"] = promptRows,
            ["loaded_rss_kib"] = loadedKiB, ["prefilled_rss_kib"] = PeerProtocol.ResidentKiB(),
        };
        return PeerProtocol.Serve(peer, first, decode, ready, loadSeconds);
    }

    /// <summary>CLIP ViT tower up to layer −2, patch rows, then the mlp2x_gelu projector: [ImageTokens, Hidden].</summary>
    private Tensor Vision(Tensor pixels)
    {
        using var scope = torch.NewDisposeScope();
        int v = _s.VisionHidden;
        var x = F.conv2d(pixels, _patchConv, strides: [_s.Patch, _s.Patch]).flatten(2).transpose(1, 2)[0]; // [576, v]
        x = cat([_classEmbed, x], 0) + _posEmbed;
        x = F.layer_norm(x, [v], _preLnW, _preLnB, 1e-5);
        foreach (var L in _vision)
        {
            // One scope per layer frees its temporaries when the layer ends, as Python's reference counting does
            // for a PyTorch user; one scope for the whole tower kept every layer's temporaries (~250 MB each).
            using var layerScope = torch.NewDisposeScope();
            var y = F.layer_norm(x, [v], L.Ln1W, L.Ln1B, 1e-5);
            var qkv = F.linear(y, L.Qkv, L.QkvB).view(-1, 3, _s.VisionHeads, v / _s.VisionHeads).permute(1, 2, 0, 3); // [3, H, T, d]
            var att = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]); // [H, T, d]
            x = x + F.linear(att.transpose(0, 1).reshape(-1, v), L.Out, L.OutB);
            y = F.layer_norm(x, [v], L.Ln2W, L.Ln2B, 1e-5);
            var f = F.linear(y, L.Fc1, L.Fc1B);
            f = f * sigmoid(1.702 * f); // quick_gelu
            x = (x + F.linear(f, L.Fc2, L.Fc2B)).MoveToOuterDisposeScope();
        }
        var patches = x[1..]; // drop CLS
        var p = F.gelu(F.linear(patches, _proj1, _proj1B));
        return F.linear(p, _proj2, _proj2B).MoveToOuterDisposeScope();
    }

    /// <summary>Text embeddings with the image rows spliced in after the first quarter of the text (where ModelBench
    /// puts the image), one forward over all rows; returns the greedy token of the last row.</summary>
    private int Prefill(int[] text, Tensor? image)
    {
        using var scope = torch.NewDisposeScope();
        var ids = tensor(text.Select(i => (long)i).ToArray(), dtype: int64);
        var x = _embed.index_select(0, ids);
        if (image is not null)
        {
            int q = text.Length / 4;
            x = cat([x[..q], image, x[q..]], 0);
        }
        var logits = Forward(x, 0);
        _position = (int)x.shape[0];
        _last = (int)logits.argmax().item<long>();
        return _last;
    }

    public int Step()
    {
        using var scope = torch.NewDisposeScope();
        var x = _embed.index_select(0, tensor(new long[] { _last }, dtype: int64));
        var logits = Forward(x, _position);
        _position++;
        _last = (int)logits.argmax().item<long>();
        return _last;
    }

    /// <summary>The decoder over rows at positions start…; logits of the last row (f32).</summary>
    private Tensor Forward(Tensor x, int start)
    {
        int t = (int)x.shape[0], h = _s.Hidden, heads = _s.Heads, d = _s.HeadDim;
        var cos = _cos[start..(start + t)].unsqueeze(0);
        var sin = _sin[start..(start + t)].unsqueeze(0);
        for (int l = 0; l < _layers.Length; l++)
        {
            using var layerScope = torch.NewDisposeScope(); // this layer's temporaries die with it (see Vision)
            var L = _layers[l];
            var y = RmsNorm(x, L.Norm1);
            var qkv = F.linear(y, L.Attn, L.AttnBias).view(t, 3, heads, d).permute(1, 2, 0, 3); // [3, H, T, d]
            var q = Rotate(qkv[0], cos, sin);
            var k = Rotate(qkv[1], cos, sin);
            _kCache[l].narrow(1, start, t).copy_(k);
            _vCache[l].narrow(1, start, t).copy_(qkv[2]);
            var keys = _kCache[l].narrow(1, 0, start + t);
            var values = _vCache[l].narrow(1, 0, start + t);
            // Prefill from position 0: causal; a decode row sees every cached key.
            var att = F.scaled_dot_product_attention(q, keys, values, is_casual: t > 1);
            x = x + F.linear(att.transpose(0, 1).reshape(t, h), L.AttnOut);
            y = RmsNorm(x, L.Norm2);
            x = (x + (L.Router is null ? Mlp(y, L, 0) : Moe(y, L))).MoveToOuterDisposeScope();
        }
        var last = RmsNorm(x[(t - 1)..], _finalNorm);
        return F.linear(last, _lmHead).to(float32)[0];
    }

    private Tensor Mlp(Tensor x, Layer L, int e) => F.linear(F.linear(x, L.W1[e]) * F.silu(F.linear(x, L.W2[e])), L.Proj[e]);

    private Tensor Moe(Tensor x, Layer L)
    {
        var probs = F.softmax(F.linear(x.to(float32), L.Router!), 1);
        var (top, index) = probs.topk(_s.TopK, 1);
        top = top / top.sum(1, keepdim: true);
        var output = zeros_like(x);
        for (int e = 0; e < _s.Experts; e++)
        {
            var hit = index.eq(e);                       // [T, k]
            var rows = hit.any(1).nonzero().squeeze(1);  // tokens routed to e
            if (rows.shape[0] == 0) continue;
            var weight = (top * hit).sum(1).index_select(0, rows).unsqueeze(1).to(x.dtype);
            output.index_add_(0, rows, Mlp(x.index_select(0, rows), L, e) * weight, 1.0);
        }
        return output;
    }

    private Tensor RmsNorm(Tensor x, Tensor weight)
    {
        var f = x.to(float32);
        f = f * rsqrt(f.pow(2).mean([-1], keepdim: true) + _s.RmsEps);
        return f.to(x.dtype) * weight;
    }

    /// <summary>rotate_half rotary embedding in f32, back to bf16: x·cos + rotate_half(x)·sin.</summary>
    private static Tensor Rotate(Tensor x, Tensor cos, Tensor sin)
    {
        var f = x.to(float32);
        int half = (int)(f.shape[^1] / 2);
        var rotated = cat([-f[.., .., half..], f[.., .., ..half]], -1);
        return (f * cos + rotated * sin).to(x.dtype);
    }

    public void Dispose()
    {
        foreach (var t in _all) t.Dispose();
        foreach (var t in _kCache.Concat(_vCache)) t.Dispose();
    }
}
