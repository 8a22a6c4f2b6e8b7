using System.Collections.Generic;
using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Emit
{
    /// <summary>The weight manifest: every planned tensor with its role, site, layer and expert, and the ignored keys.</summary>
    internal sealed partial class VariantEmitter
    {
        private void WriteManifestFactory()
        {
            _writer.Open("private static " + Rt + "Checkpoints.WeightManifest CreateManifest()");
            _writer.Line("var entries = new " + Rt + "Checkpoints.WeightEntry[]");
            _writer.Line("{");
            _writer.Indent();
            foreach (PlannedTensor t in _plan.Tensors)
            {
                var dims = new string[t.Shape.Length];
                for (int i = 0; i < dims.Length; i++) dims[i] = SourceWriter.Int(t.Shape[i]);
                string shape = string.Join(", ", dims);
                string layer = SourceWriter.Int(t.Layer), expert = SourceWriter.Int(t.Expert);
                _writer.Line($"new({SourceWriter.Literal(t.Key)}, new[] {{ {shape} }}, {Rt}Checkpoints.WeightRole.{t.Role}, {Rt}Checkpoints.WeightSite.{t.Site}, {layer}, {expert}),");
            }

            _writer.Unindent();
            _writer.Line("};");
            _writer.Line("var ignored = new string[]");
            _writer.Line("{");
            _writer.Indent();
            foreach (string key in _plan.IgnoredKeys()) _writer.Line(SourceWriter.Literal(key) + ",");
            _writer.Unindent();
            _writer.Line("};");
            _writer.Line("return new " + Rt + "Checkpoints.WeightManifest(" + SourceWriter.Literal(_variant.Name) + ", entries, ignored);");
            _writer.Close();
        }
    }
}
