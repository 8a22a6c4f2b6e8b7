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
            string pp = _names.LayerPrefixPattern;
            int qDim = Llm.Heads * Llm.HeadDim, kvDim = Llm.KvHeads * Llm.HeadDim;
            MoeModel? m = _variant.Moe;
            _writer.Line();
            _writer.Summary(moe
                ? "A decoder layer whose FFN is a mixture of " + SourceWriter.Int(m!.Experts) + " experts (top-" + SourceWriter.Int(m.TopK) + ", " + m.Routing.SpecName() + " routing)."
                : "A decoder layer with a dense FFN.");
            _writer.Open("public sealed class " + type);
            _writer.Open("internal " + type + "(" + Weights + " weights, " + Backend + " backend, string prefix, int layer)");
            _writer.Line("InputNorm = " + NormExpression("prefix + \"" + _names.InputNorm + "\"", LayerNormLlm, eps) + ";");
            string qkvBias = SourceWriter.Bool(Llm.QkvBias);
            if (_names.FusedQkv)
            {
                string qkvRows = SourceWriter.Int(qDim + 2 * kvDim);
                _writer.Line($"{Tensor} qkv = Weight(weights, prefix + \"{_names.FusedQkvName}.weight\"); // [{qkvRows}, {Width}] q | k | v");
                if (Llm.QkvBias) _writer.Line($"{Tensor} qkvBias = Weight(weights, prefix + \"{_names.FusedQkvName}.bias\"); // [{qkvRows}]");
                // q, k and v are row ranges of the fused weight (and bias), sliced without copying.
                string Linear(int start, int count)
                {
                    string range = SourceWriter.Int(start) + ", " + SourceWriter.Int(count);
                    return $"new {Modules}Linear(backend, qkv.SliceRows({range}), {(Llm.QkvBias ? $"qkvBias.SliceRows({range})" : "null")})";
                }

                _writer.Lines($"""
                    Attention = new {Modules}CausalSelfAttention(
                        {Linear(0, qDim)},
                        {Linear(qDim, kvDim)},
                        {Linear(qDim + kvDim, kvDim)},
                    """);
            }
            else
            {
                _writer.Lines($"""
                    Attention = new {Modules}CausalSelfAttention(
                        Dense(weights, backend, prefix + "{_names.QName}", bias: {qkvBias}),
                        Dense(weights, backend, prefix + "{_names.KName}", bias: {qkvBias}),
                        Dense(weights, backend, prefix + "{_names.VName}", bias: {qkvBias}),
                    """);
            }

            _writer.Lines($"""
                    Dense(weights, backend, prefix + "{_names.OutName}", bias: {SourceWriter.Bool(Llm.AttnOutBias)}),
                    Geometry,
                    layer);
                """);
            if (!Llm.ParallelResidual) _writer.Line("PostAttentionNorm = " + NormExpression("prefix + \"" + _names.PostAttentionNorm + "\"", LayerNormLlm, eps) + ";");
            if (moe)
            {
                string factory = _names.OwnExpertNames ? "MixtralExpertAt" : "FeedForwardAt";
                _writer.Lines($$"""
                    var experts = new {{ExpertType}}[{{SourceWriter.Int(m!.Experts)}}];
                    for (int e = 0; e < experts.Length; e++)
                    {
                        experts[e] = {{factory}}(weights, backend, prefix + "{{_names.ExpertPrefix}}" + e.ToString({{Invariant}}) + ".");
                    }
                    """);
                string router = $"Dense(weights, backend, prefix + \"{_names.Router}\", bias: false)";
                if (m.Residual)
                {
                    _writer.Lines($"""
                        // PR-MoE: a dense MLP beside the experts, mixed by a learned [2, {Width}] coefficient.
                        Mlp = new {MoeFfnType}({router}, experts, LlmMoeOptions, "llm", layer,
                            FeedForwardAt(weights, backend, prefix + "{_names.ResidualMlp}"), Dense(weights, backend, prefix + "{_names.ResidualCoefficient}", bias: true));
                        """);
                }
                else
                {
                    _writer.Line($"Mlp = new {MoeFfnType}({router}, experts, LlmMoeOptions, \"llm\", layer);");
                }
            }
            else
            {
                _writer.Line("Mlp = FeedForwardAt(weights, backend, prefix + \"" + _names.DenseMlp + "\");");
            }

            _writer.Close();
            _writer.Line();
            string nb = LayerNormLlm ? ".{weight,bias}" : ".weight";
            _writer.Line("/// <summary>" + pp + _names.InputNorm + nb + " [" + Width + "]</summary>");
            _writer.Line("public " + LlmNormType + " InputNorm { get; }");
            if (_names.FusedQkv)
            {
                _writer.Line("/// <summary>" + pp + _names.FusedQkvName + ".weight [" + SourceWriter.Int(qDim + 2 * kvDim) + ", " + Width + "]" + (Llm.QkvBias ? " and .bias" : "") + " (rows q | k | v), " +
                    pp + _names.OutName + ".weight [" + Width + ", " + SourceWriter.Int(qDim) + "]; " + SourceWriter.Int(Llm.Heads) + " heads of " + SourceWriter.Int(Llm.HeadDim) + ", rotary on " + SourceWriter.Int(Llm.RotaryDims) + " dims</summary>");
            }
            else
            {
                _writer.Line("/// <summary>" + pp + "{" + _names.QName + " [" + SourceWriter.Int(qDim) + ", " + Width + "], " + _names.KName + " [" + SourceWriter.Int(kvDim) + ", " + Width + "], " + _names.VName + " [" +
                    SourceWriter.Int(kvDim) + ", " + Width + "]}" + (Llm.QkvBias ? " with biases" : "") + ", " + _names.OutName + " [" + Width + ", " + SourceWriter.Int(qDim) + "]; " +
                    SourceWriter.Int(Llm.Heads) + " heads (" + SourceWriter.Int(Llm.KvHeads) + " kv) of " + SourceWriter.Int(Llm.HeadDim) + ", rotary on " + SourceWriter.Int(Llm.RotaryDims) + " dims</summary>");
            }

            _writer.Line("public " + Modules + "CausalSelfAttention Attention { get; }");
            if (!Llm.ParallelResidual)
            {
                _writer.Line("/// <summary>" + pp + _names.PostAttentionNorm + nb + " [" + Width + "]</summary>");
                _writer.Line("public " + LlmNormType + " PostAttentionNorm { get; }");
            }

            string f = SourceWriter.Int(Llm.FfnSize);
            var parts = moe ? _names.ExpertParts : _names.FfnParts;
            string ffnShapes = _ffn.Linears == 2
                ? parts.A + " [" + f + ", " + Width + "], " + parts.B + " [" + Width + ", " + f + "]"
                : parts.A + " [" + f + ", " + Width + "], " + parts.B + " [" + f + ", " + Width + "], " + parts.Out + " [" + Width + ", " + f + "]";
            if (moe)
            {
                _writer.Line("/// <summary>router " + pp + _names.Router + ".weight [" + SourceWriter.Int(m!.Experts) + ", " + Width + "]; expert e: " + pp + _names.ExpertPrefix + "{e}.{" + ffnShapes + "}</summary>");
            }
            else
            {
                _writer.Line("/// <summary>" + pp + _names.DenseMlp + "{" + ffnShapes + "}</summary>");
            }

            _writer.Line("public " + ffnType + " Mlp { get; }");
            _writer.Line();
            _writer.Summary("x [T, " + Width + "] is the residual stream: updated in place and returned.");
            _writer.Open("public " + Tensor + " Forward(" + Context + " context, " + Tensor + " x)");
            _writer.Line(Tensor + " h = InputNorm.Forward(context, x); // [T, " + Width + "]");
            _writer.Line(Tensor + " attention = Attention.Forward(context, h); // [T, " + Width + "]");
            string mlpNote = moe ? " top-" + SourceWriter.Int(m!.TopK) + " of " + SourceWriter.Int(m.Experts) + " experts per token" : "";
            if (Llm.ParallelResidual)
            {
                _writer.Line(Tensor + " mlp = Mlp.Forward(context, h); // [T, " + Width + "] parallel to attention, same normed input;" + mlpNote);
                _writer.Line(Release + "h);");
                _writer.Line("context.Backend.Add(x, attention, x); // x += attention");
                _writer.Line("context.Backend.Add(x, mlp, x); // x += mlp");
                _writer.Line(Release + "attention);");
                _writer.Line(Release + "mlp);");
            }
            else
            {
                _writer.Line(Release + "h);");
                _writer.Line("context.Backend.Add(x, attention, x); // x += attention");
                _writer.Line(Release + "attention);");
                _writer.Line("h = PostAttentionNorm.Forward(context, x); // [T, " + Width + "]");
                _writer.Line(Tensor + " mlp = Mlp.Forward(context, h); // [T, " + Width + "]" + mlpNote);
                _writer.Line(Release + "h);");
                _writer.Line("context.Backend.Add(x, mlp, x); // x += mlp");
                _writer.Line(Release + "mlp);");
            }

            _writer.Line("return x;");
            _writer.Close();
            _writer.Close();
        }
    }
}
