using System.Collections.Generic;
using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Emit
{
    /// <summary>The decoder block classes (MoE and dense).</summary>
    internal sealed partial class VariantEmitter
    {
        private void WriteBlock(bool moe)
        {
            string type = moe ? "MoeBlock" : "DenseBlock";
            string ffnType = moe ? MoeFfnType : DenseFfnType;
            string eps = SourceWriter.Float(Llm.NormEps);
            string pp = _n.LayerPrefixPattern;
            int qDim = Llm.Heads * Llm.HeadDim, kvDim = Llm.KvHeads * Llm.HeadDim;
            MoeModel? m = _v.Moe;
            _w.Line();
            _w.Summary(moe
                ? "A decoder layer whose FFN is a mixture of " + SourceWriter.Int(m!.Experts) + " experts (top-" + SourceWriter.Int(m.TopK) + ", " + m.Routing.SpecName() + " routing)."
                : "A decoder layer with a dense FFN.");
            _w.Open("public sealed class " + type);
            _w.Open("internal " + type + "(" + Weights + " weights, " + Backend + " backend, string prefix, int layer)");
            _w.Line("InputNorm = " + NormExpression("prefix + \"" + _n.InputNorm + "\"", LayerNormLlm, eps) + ";");
            string qkvBias = SourceWriter.Bool(Llm.QkvBias);
            if (_n.FusedQkv)
            {
                _w.Line(Tensor + " qkv = Weight(weights, prefix + \"" + _n.FusedQkvName + ".weight\"); // [" + SourceWriter.Int(qDim + 2 * kvDim) + ", " + H + "] q | k | v");
                if (Llm.QkvBias) _w.Line(Tensor + " qkvBias = Weight(weights, prefix + \"" + _n.FusedQkvName + ".bias\"); // [" + SourceWriter.Int(qDim + 2 * kvDim) + "]");
                string Slice(string t, int start, int count) => t + ".SliceRows(" + SourceWriter.Int(start) + ", " + SourceWriter.Int(count) + ")";
                string bias(int start, int count) => Llm.QkvBias ? Slice("qkvBias", start, count) : "null";
                _w.Line("Attention = new " + Modules + "CausalSelfAttention(");
                _w.Line("    new " + Modules + "Linear(backend, " + Slice("qkv", 0, qDim) + ", " + bias(0, qDim) + "),");
                _w.Line("    new " + Modules + "Linear(backend, " + Slice("qkv", qDim, kvDim) + ", " + bias(qDim, kvDim) + "),");
                _w.Line("    new " + Modules + "Linear(backend, " + Slice("qkv", qDim + kvDim, kvDim) + ", " + bias(qDim + kvDim, kvDim) + "),");
            }
            else
            {
                _w.Line("Attention = new " + Modules + "CausalSelfAttention(");
                _w.Line("    Dense(weights, backend, prefix + \"" + _n.QName + "\", bias: " + qkvBias + "),");
                _w.Line("    Dense(weights, backend, prefix + \"" + _n.KName + "\", bias: " + qkvBias + "),");
                _w.Line("    Dense(weights, backend, prefix + \"" + _n.VName + "\", bias: " + qkvBias + "),");
            }

            _w.Line("    Dense(weights, backend, prefix + \"" + _n.OutName + "\", bias: " + SourceWriter.Bool(Llm.AttnOutBias) + "),");
            _w.Line("    Geometry,");
            _w.Line("    layer);");
            if (!Llm.ParallelResidual) _w.Line("PostAttentionNorm = " + NormExpression("prefix + \"" + _n.PostAttentionNorm + "\"", LayerNormLlm, eps) + ";");
            if (moe)
            {
                string factory = _n.OwnExpertNames ? "MixtralExpertAt" : "FeedForwardAt";
                _w.Line("var experts = new " + ExpertType + "[" + SourceWriter.Int(m!.Experts) + "];");
                _w.Open("for (int e = 0; e < experts.Length; e++)");
                _w.Line("experts[e] = " + factory + "(weights, backend, prefix + \"" + _n.ExpertPrefix + "\" + e.ToString(" + Invariant + ") + \".\");");
                _w.Close();
                string router = "Dense(weights, backend, prefix + \"" + _n.Router + "\", bias: false)";
                if (m.Residual)
                {
                    _w.Line("// PR-MoE: a dense MLP beside the experts, mixed by a learned [2, " + H + "] coefficient.");
                    _w.Line("Mlp = new " + MoeFfnType + "(" + router + ", experts, LlmMoeOptions, \"llm\", layer,");
                    _w.Line("    FeedForwardAt(weights, backend, prefix + \"" + _n.ResidualMlp + "\"), Dense(weights, backend, prefix + \"" + _n.ResidualCoefficient + "\", bias: true));");
                }
                else
                {
                    _w.Line("Mlp = new " + MoeFfnType + "(" + router + ", experts, LlmMoeOptions, \"llm\", layer);");
                }
            }
            else
            {
                _w.Line("Mlp = FeedForwardAt(weights, backend, prefix + \"" + _n.DenseMlp + "\");");
            }

            _w.Close();
            _w.Line();
            string nb = LayerNormLlm ? ".{weight,bias}" : ".weight";
            _w.Line("/// <summary>" + pp + _n.InputNorm + nb + " [" + H + "]</summary>");
            _w.Line("public " + LlmNormType + " InputNorm { get; }");
            if (_n.FusedQkv)
            {
                _w.Line("/// <summary>" + pp + _n.FusedQkvName + ".weight [" + SourceWriter.Int(qDim + 2 * kvDim) + ", " + H + "]" + (Llm.QkvBias ? " and .bias" : "") + " (rows q | k | v), " +
                    pp + _n.OutName + ".weight [" + H + ", " + SourceWriter.Int(qDim) + "]; " + SourceWriter.Int(Llm.Heads) + " heads of " + SourceWriter.Int(Llm.HeadDim) + ", rotary on " + SourceWriter.Int(Llm.RotaryDims) + " dims</summary>");
            }
            else
            {
                _w.Line("/// <summary>" + pp + "{" + _n.QName + " [" + SourceWriter.Int(qDim) + ", " + H + "], " + _n.KName + " [" + SourceWriter.Int(kvDim) + ", " + H + "], " + _n.VName + " [" +
                    SourceWriter.Int(kvDim) + ", " + H + "]}" + (Llm.QkvBias ? " with biases" : "") + ", " + _n.OutName + " [" + H + ", " + SourceWriter.Int(qDim) + "]; " +
                    SourceWriter.Int(Llm.Heads) + " heads (" + SourceWriter.Int(Llm.KvHeads) + " kv) of " + SourceWriter.Int(Llm.HeadDim) + ", rotary on " + SourceWriter.Int(Llm.RotaryDims) + " dims</summary>");
            }

            _w.Line("public " + Modules + "CausalSelfAttention Attention { get; }");
            if (!Llm.ParallelResidual)
            {
                _w.Line("/// <summary>" + pp + _n.PostAttentionNorm + nb + " [" + H + "]</summary>");
                _w.Line("public " + LlmNormType + " PostAttentionNorm { get; }");
            }

            string f = SourceWriter.Int(Llm.FfnSize);
            var parts = moe ? _n.ExpertParts : _n.FfnParts;
            string ffnShapes = _ffn.Linears == 2
                ? parts.A + " [" + f + ", " + H + "], " + parts.B + " [" + H + ", " + f + "]"
                : parts.A + " [" + f + ", " + H + "], " + parts.B + " [" + f + ", " + H + "], " + parts.Out + " [" + H + ", " + f + "]";
            if (moe)
            {
                _w.Line("/// <summary>router " + pp + _n.Router + ".weight [" + SourceWriter.Int(m!.Experts) + ", " + H + "]; expert e: " + pp + _n.ExpertPrefix + "{e}.{" + ffnShapes + "}</summary>");
            }
            else
            {
                _w.Line("/// <summary>" + pp + _n.DenseMlp + "{" + ffnShapes + "}</summary>");
            }

            _w.Line("public " + ffnType + " Mlp { get; }");
            _w.Line();
            _w.Summary("x [T, " + H + "] is the residual stream: updated in place and returned.");
            _w.Open("public " + Tensor + " Forward(" + Context + " context, " + Tensor + " x)");
            _w.Line(Tensor + " h = InputNorm.Forward(context, x); // [T, " + H + "]");
            _w.Line(Tensor + " attention = Attention.Forward(context, h); // [T, " + H + "]");
            string mlpNote = moe ? " top-" + SourceWriter.Int(m!.TopK) + " of " + SourceWriter.Int(m.Experts) + " experts per token" : "";
            if (Llm.ParallelResidual)
            {
                _w.Line(Tensor + " mlp = Mlp.Forward(context, h); // [T, " + H + "] parallel to attention, same normed input;" + mlpNote);
                _w.Line(Release + "h);");
                _w.Line("context.Backend.Add(x, attention, x); // x += attention");
                _w.Line("context.Backend.Add(x, mlp, x); // x += mlp");
                _w.Line(Release + "attention);");
                _w.Line(Release + "mlp);");
            }
            else
            {
                _w.Line(Release + "h);");
                _w.Line("context.Backend.Add(x, attention, x); // x += attention");
                _w.Line(Release + "attention);");
                _w.Line("h = PostAttentionNorm.Forward(context, x); // [T, " + H + "]");
                _w.Line(Tensor + " mlp = Mlp.Forward(context, h); // [T, " + H + "]" + mlpNote);
                _w.Line(Release + "h);");
                _w.Line("context.Backend.Add(x, mlp, x); // x += mlp");
                _w.Line(Release + "mlp);");
            }

            _w.Line("return x;");
            _w.Close();
            _w.Close();
        }
    }
}
