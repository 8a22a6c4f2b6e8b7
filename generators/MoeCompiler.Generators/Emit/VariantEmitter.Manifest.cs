using System.Collections.Generic;
using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Emit
{
    /// <summary>The weight manifest: every planned tensor with its role, site, layer and expert, and the ignored keys.</summary>
    internal sealed partial class VariantEmitter
    {
        private void WriteManifestFactory()
        {
            _w.Open("private static " + Rt + "Checkpoints.WeightManifest CreateManifest()");
            _w.Line("var entries = new " + Rt + "Checkpoints.WeightEntry[]");
            _w.Line("{");
            _w.Indent();
            foreach (PlannedTensor t in _plan.Tensors)
            {
                var dims = new string[t.Shape.Length];
                for (int i = 0; i < dims.Length; i++) dims[i] = SourceWriter.Int(t.Shape[i]);
                string shape = string.Join(", ", dims);
                string layer = SourceWriter.Int(t.Layer), expert = SourceWriter.Int(t.Expert);
                _w.Line($"new({SourceWriter.Literal(t.Key)}, new[] {{ {shape} }}, {Rt}Checkpoints.WeightRole.{t.Role}, {Rt}Checkpoints.WeightSite.{t.Site}, {layer}, {expert}),");
            }

            _w.Unindent();
            _w.Line("};");
            _w.Line("var ignored = new string[]");
            _w.Line("{");
            _w.Indent();
            foreach (string key in _plan.IgnoredKeys()) _w.Line(SourceWriter.Literal(key) + ",");
            _w.Unindent();
            _w.Line("};");
            _w.Line("return new " + Rt + "Checkpoints.WeightManifest(" + SourceWriter.Literal(_v.Name) + ", entries, ignored);");
            _w.Close();
        }
    }
}
