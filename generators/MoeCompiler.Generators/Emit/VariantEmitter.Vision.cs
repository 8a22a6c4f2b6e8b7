using System.Collections.Generic;
using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Emit
{
    /// <summary>The vision side: image description, tower and projector construction, EncodeImage and the VisionTower class.</summary>
    internal sealed partial class VariantEmitter
    {
        private void WriteImageDescription(string cst)
        {
            _writer.Line("ImageSize = " + cst + ".ImageSize,");
            _writer.Line("ImageTokens = " + cst + ".ImageTokens,");
            _writer.Line("ImageMean = new float[] { " + TowerProfile.ImageMean + " },");
            _writer.Line("ImageStd = new float[] { " + TowerProfile.ImageStd + " },");

            _writer.Line("VisionScales = " + cst + ".VisionScales.ToArray(),");
        }

        private void WriteVisionConstruction()
        {
            _writer.Line("Vision = new VisionTower(weights, backend);");
            if (Projector.Moe is not null)
            {
                string experts = SourceWriter.Int(Projector.Moe.Experts);
                string expertPrefix = SourceWriter.Literal(_names.ProjectorExpertPrefix), router = SourceWriter.Literal(_names.ProjectorRouter);
                _writer.Lines($$"""
                    var projectorExperts = new {{Modules}}GeluFeedForward[{{experts}}];
                    for (int e = 0; e < projectorExperts.Length; e++)
                    {
                        string expert = {{expertPrefix}} + e.ToString({{Invariant}}) + ".";
                        projectorExperts[e] = new {{Modules}}GeluFeedForward(Dense(weights, backend, expert + "0", bias: true), Dense(weights, backend, expert + "2", bias: true), {{Activation}}.GeluErf);
                    }
                    Projector = new {{ProjectorType}}(Dense(weights, backend, {{router}}, bias: false), projectorExperts, ProjectorMoeOptions, "projector", 0);
                    """);
            }
            else
            {
                string first = SourceWriter.Literal(_names.ProjectorPrefix + "0"), second = SourceWriter.Literal(_names.ProjectorPrefix + "2");
                _writer.Line($"Projector = new {Modules}GeluFeedForward(Dense(weights, backend, {first}, bias: true), Dense(weights, backend, {second}, bias: true), {Activation}.GeluErf);");
            }
        }

        private void WriteVisionProperties()
        {
            _writer.Line("/// <summary>" + SourceWriter.Xml(_names.VisionPrefix) + "* (" + Vision.Tower.SpecName() + ", " + SourceWriter.Int(Vision.UsedLayers) + " of " + SourceWriter.Int(Vision.Layers) + " layers run)</summary>");
            _writer.Line("public VisionTower Vision { get; }");
            if (Projector.Moe is SideMoeModel pmoe)
            {
                _writer.Line("/// <summary>router " + _names.ProjectorRouter + ".weight [" + SourceWriter.Int(pmoe.Experts) + ", " + SourceWriter.Int(Vision.FeatureWidth) + "]; expert e: " +
                    _names.ProjectorExpertPrefix + "{e}.0 [" + Width + ", " + SourceWriter.Int(Vision.FeatureWidth) + "], .2 [" + Width + ", " + Width + "] (Linear, erf GELU, Linear)</summary>");
            }
            else
            {
                _writer.Line("/// <summary>" + SourceWriter.Xml(_names.ProjectorPrefix) + "0 [" + Width + ", " + SourceWriter.Int(Vision.FeatureWidth) + "], .2 [" + Width + ", " + Width + "] (Linear, erf GELU, Linear)</summary>");
            }

            _writer.Line("public " + ProjectorType + " Projector { get; }");
        }

        private void WriteEncodeImage()
        {
            string size = SourceWriter.Int(Vision.ImageSize);
            string rows = SourceWriter.Int(Vision.FeatureRows);
            _writer.Summary($"Preprocessed pixels [3, {size}, {size}] -> image features [{rows}, {Width}] in the LLM's embedding space.");
            _writer.Open($"public {Tensor} EncodeImage({Context} context, {Tensor} pixels)");
            _writer.Lines($$"""
                global::System.ArgumentNullException.ThrowIfNull(context);
                global::System.ArgumentNullException.ThrowIfNull(pixels);
                if (pixels.Rank != 3 || pixels.Dim(0) != 3 || pixels.Dim(1) != {{size}} || pixels.Dim(2) != {{size}})
                    throw new global::System.ArgumentException("{{_variant.Name}} expects pixels [3, {{size}}, {{size}}], got " + {{Tensor}}.FormatShape(pixels.Shape), nameof(pixels));
                """);
            if (Vision.Scales.Count > 1)
            {
                string patch = SourceWriter.Int(Vision.PatchSize), width = SourceWriter.Int(Vision.FeatureWidth);
                _writer.Lines($"""
                    // S2: the tower sees the image at every scale (tiles of {size}), features concatenated on channels.
                    {Tensor} features = {Modules}MultiScaleVision.EncodeS2(context, pixels, {size}, {patch}, S2Scales, tile => Vision.Forward(context, tile)); // [{rows}, {width}]
                    """);
            }
            else
            {
                _writer.Line(Tensor + " features = Vision.Forward(context, pixels); // [" + rows + ", " + VisionWidth + "]");
            }

            string moeNote = Projector.Moe is SideMoeModel pm ? " top-" + SourceWriter.Int(pm.TopK) + " of " + SourceWriter.Int(pm.Experts) + " experts" : "";
            _writer.Line(Tensor + " projected = Projector.Forward(context, features); // [" + rows + ", " + Width + "]" + moeNote);
            _writer.Line(Release + "features);");
            _writer.Line("return projected;");
            _writer.Close();
            _writer.Line();
        }

        private void WriteVisionTower()
        {
            VisionModel vis = Vision;
            TowerProfile tower = TowerProfile;
            bool classToken = tower.ClassToken;
            string vp = _names.VisionPrefix;
            string eps = SourceWriter.Float(vis.NormEps);
            int headDim = vis.HiddenSize / vis.Heads;
            string rows = SourceWriter.Int(vis.TowerRows);
            string activation = Activation + "." + tower.Activation;
            _writer.Line();
            _writer.Summary("The " + vis.Tower.SpecName() + " tower up to the selected hidden state (selectLayer " + SourceWriter.Int(vis.SelectLayer) + "): " +
                SourceWriter.Int(vis.UsedLayers) + " of " + SourceWriter.Int(vis.Layers) + " encoder layers" + (vis.Moe is null ? "" : ", each MLP a top-" + SourceWriter.Int(vis.Moe.TopK) + "-of-" + SourceWriter.Int(vis.Moe.Experts) + " MoE") + ".");
            _writer.Open("public sealed class VisionTower");
            _writer.Open("internal VisionTower(" + Weights + " weights, " + Backend + " backend)");
            string patchWeight = SourceWriter.Literal(vp + "embeddings.patch_embedding.weight");
            string positions = SourceWriter.Literal(vp + "embeddings.position_embedding.weight");
            // CLIP: a class embedding and a pre-norm; SigLIP: a patch bias in the class embedding's place.
            string second = SourceWriter.Literal(vp + (classToken ? "embeddings.class_embedding" : "embeddings.patch_embedding.bias"));
            _writer.Lines($"""
                Embeddings = new {Modules}{tower.EmbeddingsModule}(backend, Weight(weights, {patchWeight}),
                    Weight(weights, {second}), Weight(weights, {positions}), {SourceWriter.Int(vis.PatchSize)});
                """);
            if (classToken) _writer.Line($"PreNorm = LayerNormAt(weights, backend, {SourceWriter.Literal(vp + "pre_layrnorm")}, {eps});");

            for (int layer = 0; layer < vis.UsedLayers; layer++)
            {
                _writer.Line("Layer" + SourceWriter.Int(layer) + " = CreateLayer(weights, backend, " + SourceWriter.Literal(_names.VisionLayerPrefix(layer)) + ", " + SourceWriter.Int(layer) + ");");
            }

            _writer.Close();
            _writer.Line();
            string c = VisionWidth;
            string pShape = "[" + c + ", 3, " + SourceWriter.Int(vis.PatchSize) + ", " + SourceWriter.Int(vis.PatchSize) + "]";
            _writer.Line(classToken
                ? "/// <summary>" + vp + "embeddings.{patch_embedding.weight " + pShape + ", class_embedding [" + c + "], position_embedding.weight [" + rows + ", " + c + "]}</summary>"
                : "/// <summary>" + vp + "embeddings.{patch_embedding.weight " + pShape + ", patch_embedding.bias [" + c + "], position_embedding.weight [" + rows + ", " + c + "]}</summary>");
            _writer.Line("public " + Modules + tower.EmbeddingsModule + " Embeddings { get; }");
            if (classToken)
            {
                _writer.Line("/// <summary>" + vp + "pre_layrnorm.{weight,bias} [" + c + "]</summary>");
                _writer.Line("public " + Modules + "LayerNorm PreNorm { get; }");
            }

            string mlp = SourceWriter.Int(vis.MlpSize);
            string ffnDoc = vis.Moe is SideMoeModel lm
                ? $"router gate.weight [{SourceWriter.Int(lm.Experts)}, {c}], experts.{{e}}.fc1 [{mlp}, {c}], experts.{{e}}.fc2 [{c}, {mlp}]"
                : $"mlp.fc1 [{mlp}, {c}], mlp.fc2 [{c}, {mlp}]";
            string layerDoc = $"layer_norm1/2 [{c}], self_attn.{{q,k,v,out}}_proj [{c}, {c}], {ffnDoc}";
            for (int layer = 0; layer < vis.UsedLayers; layer++)
            {
                _writer.Line("/// <summary>" + _names.VisionLayerPrefix(layer) + "{" + layerDoc + "}, all with biases but the router</summary>");
                _writer.Line("public " + VisionLayerType + " Layer" + SourceWriter.Int(layer) + " { get; }");
            }

            _writer.Line();
            _writer.Open($"private static {VisionLayerType} CreateLayer({Weights} weights, {Backend} backend, string prefix, int layer)");
            _writer.Lines($"""
                var attention = new {Modules}EncoderSelfAttention(Dense(weights, backend, prefix + "self_attn.q_proj", bias: true), Dense(weights, backend, prefix + "self_attn.k_proj", bias: true),
                    Dense(weights, backend, prefix + "self_attn.v_proj", bias: true), Dense(weights, backend, prefix + "self_attn.out_proj", bias: true), {SourceWriter.Int(vis.Heads)}, {SourceWriter.Int(headDim)});
                """);
            if (vis.Moe is SideMoeModel vm)
            {
                _writer.Lines($$"""
                    var experts = new {{Modules}}GeluFeedForward[{{SourceWriter.Int(vm.Experts)}}];
                    for (int e = 0; e < experts.Length; e++)
                    {
                        string expert = prefix + "{{_names.VisionExpertPrefix}}" + e.ToString({{Invariant}}) + ".";
                        experts[e] = new {{Modules}}GeluFeedForward(Dense(weights, backend, expert + "fc1", bias: true), Dense(weights, backend, expert + "fc2", bias: true), {{activation}});
                    }
                    var mlp = new {{VisionFfnType}}(Dense(weights, backend, prefix + "{{_names.VisionRouter}}", bias: false), experts, VisionMoeOptions, "vision", layer);
                    """);
            }
            else
            {
                _writer.Lines($"""
                    _ = layer;
                    var mlp = new {Modules}GeluFeedForward(Dense(weights, backend, prefix + "mlp.fc1", bias: true), Dense(weights, backend, prefix + "mlp.fc2", bias: true), {activation});
                    """);
            }

            _writer.Line($"return new {VisionLayerType}(LayerNormAt(weights, backend, prefix + \"layer_norm1\", {eps}), attention, LayerNormAt(weights, backend, prefix + \"layer_norm2\", {eps}), mlp);");
            _writer.Close();
            _writer.Line();
            int s = vis.ImageSize;
            string feat = SourceWriter.Int(vis.FeatureRows);
            _writer.Summary("Pixels [3, " + SourceWriter.Int(s) + ", " + SourceWriter.Int(s) + "] -> selected features [" + feat + ", " + c + "].");
            _writer.Open("public " + Tensor + " Forward(" + Context + " context, " + Tensor + " pixels)");
            _writer.Line(Tensor + " x = Embeddings.Forward(context, pixels); // [" + rows + ", " + c + "]" + (classToken ? " CLS + " + SourceWriter.Int(vis.Patches) + " patches" : " " + SourceWriter.Int(vis.Patches) + " patches"));
            _writer.Line(Tensor + " next;");
            if (classToken)
            {
                _writer.Line("next = PreNorm.Forward(context, x); // [" + rows + ", " + c + "]");
                _writer.Line(Release + "x);");
                _writer.Line("x = next;");
            }

            for (int layer = 0; layer < vis.UsedLayers; layer++)
            {
                string note = layer == vis.UsedLayers - 1 ? " = hidden state selected by selectLayer " + SourceWriter.Int(vis.SelectLayer) : "";
                _writer.Line("next = Layer" + SourceWriter.Int(layer) + ".Forward(context, x); // [" + rows + ", " + c + "]" + note);
                _writer.Line(Release + "x);");
                _writer.Line("x = next;");
            }

            if (vis.SelectFeature == SelectFeature.Patch)
            {
                _writer.Line(Tensor + " features = context.Backend.Allocate(" + DType + ".F32, " + feat + ", " + c + "); // [" + feat + ", " + c + "]");
                _writer.Line("context.Backend.CopyRows(x, 1, features, 0, " + feat + "); // \"patch\": drop row 0 (" + tower.FirstRowNote + ")");
                _writer.Line(Release + "x);");
                _writer.Line("return features;");
            }
            else
            {
                _writer.Line("return x; // \"cls_patch\": every row");
            }

            _writer.Close();
            _writer.Close();
        }
    }
}
