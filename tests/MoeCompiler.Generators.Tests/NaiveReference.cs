namespace MoeCompiler.Generators.Tests;

/// <summary>
/// An independent plain-loop (double precision) implementation of the tiny variants' forward passes, written from
/// the public reference code's architectures (MoE-LLaVA, DeepSpeed MoE, CuMo, transformers; docs/architecture.md) and reading weights by checkpoint key. It shares no code with
/// the runtime modules or the generator; the generated models must agree with it.
/// </summary>
internal sealed class NaiveReference
{
    private readonly Func<string, float[]> _w;
    private readonly Func<string, bool> _has;

    public NaiveReference(Func<string, float[]> weights, Func<string, bool> has)
    {
        _w = weights;
        _has = has;
    }

    public required string Family { get; init; }
    public required int Hidden { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int RotaryDims { get; init; }
    public required double Theta { get; init; }
    public required double Eps { get; init; }
    public required bool LayerNorm { get; init; }
    public required int Vocab { get; init; }
    public required int[] MoeLayers { get; init; }
    public required int Experts { get; init; }

    private string Prefix(int layer) => Family == "qwen" ? $"transformer.h.{layer}." : $"model.layers.{layer}.";

    /// <summary>Embeddings [T][W] at positions 0.. → logits [T][V].</summary>
    public double[][] Forward(double[][] x)
    {
        x = x.Select(r => (double[])r.Clone()).ToArray();
        for (int layer = 0; layer < Layers; layer++)
        {
            string p = Prefix(layer);
            var h = Norm(x, p + (Family == "qwen" ? "ln_1" : "input_layernorm"));
            var attention = Attention(h, p);
            if (Family == "phi")
            {
                var mlp = Mlp(h, p, layer);
                for (int t = 0; t < x.Length; t++) for (int i = 0; i < Hidden; i++) x[t][i] += attention[t][i] + mlp[t][i];
                continue;
            }

            for (int t = 0; t < x.Length; t++) for (int i = 0; i < Hidden; i++) x[t][i] += attention[t][i];
            h = Norm(x, p + (Family == "qwen" ? "ln_2" : "post_attention_layernorm"));
            var m = Mlp(h, p, layer);
            for (int t = 0; t < x.Length; t++) for (int i = 0; i < Hidden; i++) x[t][i] += m[t][i];
        }

        string final = Family == "qwen" ? "transformer.ln_f" : Family == "phi" ? "model.final_layernorm" : "model.norm";
        return Linear(Norm(x, final), "lm_head");
    }

    private double[][] Norm(double[][] x, string name)
    {
        var weight = _w(name + ".weight");
        var bias = LayerNorm ? _w(name + ".bias") : null;
        return x.Select(row =>
        {
            double mean = LayerNorm ? row.Average() : 0;
            double variance = row.Select(v => (v - mean) * (v - mean)).Average();
            double scale = 1 / Math.Sqrt(variance + Eps);
            return row.Select((v, i) => (v - mean) * scale * weight[i] + (bias?[i] ?? 0)).ToArray();
        }).ToArray();
    }

    public double[][] Linear(double[][] x, string name, int rowOffset = 0, int rows = -1)
    {
        var weight = _w(name + ".weight");
        var bias = _has(name + ".bias") ? _w(name + ".bias") : null;
        int inFeatures = x[0].Length;
        int outFeatures = rows >= 0 ? rows : weight.Length / inFeatures;
        return x.Select(row =>
        {
            var y = new double[outFeatures];
            for (int o = 0; o < outFeatures; o++)
            {
                double s = bias?[rowOffset + o] ?? 0;
                for (int i = 0; i < inFeatures; i++) s += weight[(rowOffset + o) * inFeatures + i] * row[i];
                y[o] = s;
            }

            return y;
        }).ToArray();
    }

    private double[][] Attention(double[][] x, string p)
    {
        int q = Heads * HeadDim, kv = KvHeads * HeadDim;
        double[][] qs, ks, vs, output;
        if (Family == "qwen")
        {
            qs = Linear(x, p + "attn.c_attn", 0, q);
            ks = Linear(x, p + "attn.c_attn", q, kv);
            vs = Linear(x, p + "attn.c_attn", q + kv, kv);
        }
        else
        {
            qs = Linear(x, p + "self_attn.q_proj");
            ks = Linear(x, p + "self_attn.k_proj");
            vs = Linear(x, p + "self_attn.v_proj");
        }

        for (int t = 0; t < x.Length; t++)
        {
            Rotate(qs[t], Heads, t);
            Rotate(ks[t], KvHeads, t);
        }

        var attended = new double[x.Length][];
        for (int t = 0; t < x.Length; t++)
        {
            attended[t] = new double[q];
            for (int head = 0; head < Heads; head++)
            {
                int kvHead = head / (Heads / KvHeads);
                var scores = new double[t + 1];
                for (int s = 0; s <= t; s++)
                {
                    double dot = 0;
                    for (int d = 0; d < HeadDim; d++) dot += qs[t][head * HeadDim + d] * ks[s][kvHead * HeadDim + d];
                    scores[s] = dot / Math.Sqrt(HeadDim);
                }

                var probabilities = Softmax(scores);
                for (int s = 0; s <= t; s++)
                {
                    for (int d = 0; d < HeadDim; d++) attended[t][head * HeadDim + d] += probabilities[s] * vs[s][kvHead * HeadDim + d];
                }
            }
        }

        output = Linear(attended, p + (Family == "qwen" ? "attn.c_proj" : Family == "phi" ? "self_attn.dense" : "self_attn.o_proj"));
        return output;
    }

    /// <summary>Rotate-half RoPE on the first RotaryDims of each head: pairs (i, i + RotaryDims/2).</summary>
    private void Rotate(double[] v, int heads, int position)
    {
        int half = RotaryDims / 2;
        for (int head = 0; head < heads; head++)
        {
            int b = head * HeadDim;
            for (int i = 0; i < half; i++)
            {
                double angle = position * Math.Pow(Theta, -2.0 * i / RotaryDims);
                double x1 = v[b + i], x2 = v[b + i + half];
                v[b + i] = x1 * Math.Cos(angle) - x2 * Math.Sin(angle);
                v[b + i + half] = x2 * Math.Cos(angle) + x1 * Math.Sin(angle);
            }
        }
    }

    private double[][] Mlp(double[][] x, string p, int layer)
    {
        if (!MoeLayers.Contains(layer)) return Ffn(x, p + "mlp.", mixtral: false);
        bool mixtral = Family == "mixtral";
        var logits = Linear(x, p + (mixtral ? "block_sparse_moe.gate" : "mlp.deepspeed_moe.gate.wg"));
        var y = new double[x.Length][];
        for (int t = 0; t < x.Length; t++)
        {
            // Top-2 of softmax, renormalised over the pair; second choice = second-highest probability.
            var probabilities = Softmax(logits[t]);
            int e1 = Array.IndexOf(probabilities, probabilities.Max());
            int e2 = Enumerable.Range(0, Experts).Where(e => e != e1).OrderByDescending(e => probabilities[e]).ThenBy(e => e).First();
            double sum = probabilities[e1] + probabilities[e2];
            y[t] = new double[Hidden];
            foreach (var (expert, weight) in new[] { (e1, probabilities[e1] / sum), (e2, probabilities[e2] / sum) })
            {
                string ep = mixtral ? $"{p}block_sparse_moe.experts.{expert}." : $"{p}mlp.deepspeed_moe.experts.deepspeed_experts.{expert}.";
                var output = Ffn(new[] { x[t] }, ep, mixtral)[0];
                for (int i = 0; i < Hidden; i++) y[t][i] += weight * output[i];
            }
        }

        return y;
    }

    private double[][] Ffn(double[][] x, string p, bool mixtral)
    {
        switch (Family)
        {
            case "phi":
                return Linear(Linear(x, p + "fc1").Select(r => r.Select(GeluTanh).ToArray()).ToArray(), p + "fc2");
            case "qwen":
                {
                    var a = Linear(x, p + "w1");
                    var b = Linear(x, p + "w2");
                    return Linear(a.Select((r, t) => r.Select((v, i) => v * Silu(b[t][i])).ToArray()).ToArray(), p + "c_proj");
                }

            default:
                {
                    var gate = Linear(x, p + (mixtral ? "w1" : "gate_proj"));
                    var up = Linear(x, p + (mixtral ? "w3" : "up_proj"));
                    return Linear(gate.Select((r, t) => r.Select((v, i) => Silu(v) * up[t][i]).ToArray()).ToArray(), p + (mixtral ? "w2" : "down_proj"));
                }
        }
    }

    private static double Silu(double v) => v / (1 + Math.Exp(-v));

    private static double GeluTanh(double v) => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));

    private static double[] Softmax(double[] z)
    {
        double max = z.Max();
        var e = z.Select(v => Math.Exp(v - max)).ToArray();
        double sum = e.Sum();
        return e.Select(v => v / sum).ToArray();
    }
}

/// <summary>Plain-loop CLIP / SigLIP tower, feature selection and mlp2x_gelu projector (MoE-LLaVA layout).</summary>
internal static class NaiveVisionReference
{
    public static double[][] EncodeImage(Func<string, float[]> w, string llmPrefix, bool clip, float[] pixels, int size, int patch,
        int width, int heads, int usedLayers, double eps)
    {
        string vp = llmPrefix + "image_tower.image_tower.vision_model.";
        int grid = size / patch, patches = grid * grid;
        var patchWeight = w(vp + "embeddings.patch_embedding.weight");
        var rows = new List<double[]>();
        if (clip) rows.Add(w(vp + "embeddings.class_embedding").Select(v => (double)v).ToArray());
        for (int py = 0; py < grid; py++)
        {
            for (int px = 0; px < grid; px++)
            {
                var row = new double[width];
                for (int c = 0; c < width; c++)
                {
                    double sum = clip ? 0 : w(vp + "embeddings.patch_embedding.bias")[c];
                    for (int ch = 0; ch < 3; ch++)
                        for (int ky = 0; ky < patch; ky++)
                            for (int kx = 0; kx < patch; kx++)
                                sum += patchWeight[((c * 3 + ch) * patch + ky) * patch + kx] * pixels[(ch * size + py * patch + ky) * size + px * patch + kx];
                    row[c] = sum;
                }

                rows.Add(row);
            }
        }

        var x = rows.ToArray();
        var position = w(vp + "embeddings.position_embedding.weight");
        for (int t = 0; t < x.Length; t++) for (int c = 0; c < width; c++) x[t][c] += position[t * width + c];
        if (clip) x = LayerNorm(x, w(vp + "pre_layrnorm.weight"), w(vp + "pre_layrnorm.bias"), eps);
        int headDim = width / heads;
        for (int layer = 0; layer < usedLayers; layer++)
        {
            string p = vp + "encoder.layers." + layer + ".";
            var h = LayerNorm(x, w(p + "layer_norm1.weight"), w(p + "layer_norm1.bias"), eps);
            var q = Linear(w, h, p + "self_attn.q_proj");
            var k = Linear(w, h, p + "self_attn.k_proj");
            var v = Linear(w, h, p + "self_attn.v_proj");
            var attended = new double[x.Length][];
            for (int t = 0; t < x.Length; t++)
            {
                attended[t] = new double[width];
                for (int head = 0; head < heads; head++)
                {
                    var scores = new double[x.Length];
                    for (int s = 0; s < x.Length; s++)
                    {
                        double dot = 0;
                        for (int d = 0; d < headDim; d++) dot += q[t][head * headDim + d] * k[s][head * headDim + d];
                        scores[s] = dot / Math.Sqrt(headDim);
                    }

                    double max = scores.Max();
                    var e = scores.Select(z => Math.Exp(z - max)).ToArray();
                    double sum = e.Sum();
                    for (int s = 0; s < x.Length; s++)
                        for (int d = 0; d < headDim; d++) attended[t][head * headDim + d] += e[s] / sum * v[s][head * headDim + d];
                }
            }

            var o = Linear(w, attended, p + "self_attn.out_proj");
            for (int t = 0; t < x.Length; t++) for (int c = 0; c < width; c++) x[t][c] += o[t][c];
            h = LayerNorm(x, w(p + "layer_norm2.weight"), w(p + "layer_norm2.bias"), eps);
            var a = Linear(w, h, p + "mlp.fc1").Select(r => r.Select(z => clip ? z / (1 + Math.Exp(-1.702 * z)) : GeluTanh(z)).ToArray()).ToArray();
            var m = Linear(w, a, p + "mlp.fc2");
            for (int t = 0; t < x.Length; t++) for (int c = 0; c < width; c++) x[t][c] += m[t][c];
        }

        var features = x.Skip(1).ToArray(); // "patch": drop row 0
        string pp = llmPrefix + "mm_projector.image_spatial_proj.";
        var hidden = Linear(w, features, pp + "0").Select(r => r.Select(z => 0.5 * z * (1 + Erf(z / Math.Sqrt(2)))).ToArray()).ToArray();
        return Linear(w, hidden, pp + "2");
    }

    private static double[][] Linear(Func<string, float[]> w, double[][] x, string name)
    {
        var weight = w(name + ".weight");
        var bias = w(name + ".bias");
        int inFeatures = x[0].Length, outFeatures = bias.Length;
        return x.Select(row => Enumerable.Range(0, outFeatures).Select(o =>
        {
            double s = bias[o];
            for (int i = 0; i < inFeatures; i++) s += weight[o * inFeatures + i] * row[i];
            return s;
        }).ToArray()).ToArray();
    }

    private static double[][] LayerNorm(double[][] x, float[] weight, float[] bias, double eps) => x.Select(row =>
    {
        double mean = row.Average();
        double variance = row.Select(v => (v - mean) * (v - mean)).Average();
        return row.Select((v, i) => (v - mean) / Math.Sqrt(variance + eps) * weight[i] + bias[i]).ToArray();
    }).ToArray();

    private static double GeluTanh(double v) => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));

    /// <summary>Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).</summary>
    private static double Erf(double x)
    {
        double sign = Math.Sign(x);
        x = Math.Abs(x);
        double t = 1 / (1 + 0.3275911 * x);
        double y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.Exp(-x * x);
        return sign * y;
    }
}
