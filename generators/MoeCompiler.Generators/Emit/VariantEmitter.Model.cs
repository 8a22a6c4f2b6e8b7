using System.Collections.Generic;
using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Emit
{
    /// <summary>The model class: statics, description, constructor, loading, forward pass and helpers.</summary>
    internal sealed partial class VariantEmitter
    {
        private void WriteModel()
        {
            string name = _variant.Name;
            string cst = name + "Constants";
            _writer.Line("/// <summary>");
            _writer.Line("/// " + SourceWriter.Xml(SourceWriter.Ascii(_variant.DisplayName)) + ": " + SourceWriter.Xml(SourceWriter.Ascii(_variant.Description)));
            _writer.Line("/// Layers: " + LayerMap(_variant) + " (M = MoE, D = dense). Compiled from " + _variant.FileName + ".");
            if (!_variant.HasVision) _writer.Line("/// Text-only: no vision tower and no projector, so it takes token ids only and offers no image encoding.");
            _writer.Line("/// </summary>");
            string model = _variant.HasVision ? "IVisionLanguageModel" : "ILanguageModel";
            _writer.Open("public sealed class " + name + " : " + Modules + model + ", global::System.IDisposable");
            WriteStatics(cst);
            WriteFieldsAndConstructor(cst);
            WriteLoad();
            WriteForward();
            WriteHelpers();
            if (HasMoeBlocks) WriteBlock(moe: true);
            if (HasDenseBlocks) WriteBlock(moe: false);
            if (_variant.HasVision) WriteVisionTower();
            _writer.Close();
        }

        private void WriteStatics(string cst)
        {
            _writer.Line("private static readonly " + Modules + "AttentionGeometry Geometry = new " + Modules + "AttentionGeometry(" +
                SourceWriter.Int(Llm.Heads) + ", " + SourceWriter.Int(Llm.KvHeads) + ", " + SourceWriter.Int(Llm.HeadDim) + ", " +
                SourceWriter.Int(Llm.RotaryDims) + ", " + SourceWriter.Float(Llm.RopeTheta) + ");");
            if (_variant.Moe is MoeModel moe)
            {
                _writer.Line("private static readonly " + Modules + "MoeOptions LlmMoeOptions = " + MoeOptions(moe.Experts, moe.TopK,
                    moe.Routing switch
                    {
                        RoutingKind.Mixtral => "Mixtral",
                        RoutingKind.DeepSpeed => "DeepSpeed",
                        _ => throw new System.ArgumentOutOfRangeException(nameof(moe.Routing)),
                    }, moe.EvalCapacityFactor, moe.MinCapacity,
                    moe.SecondExpert switch
                    {
                        SecondExpertPolicy.Sampled => "Sampled",
                        SecondExpertPolicy.Deterministic => "Deterministic",
                        _ => throw new System.ArgumentOutOfRangeException(nameof(moe.SecondExpert)),
                    }) + ";");
            }

            if (_variant.Vision?.Moe is SideMoeModel vm)
            {
                _writer.Line("private static readonly " + Modules + "MoeOptions VisionMoeOptions = " + MoeOptions(vm.Experts, vm.TopK, "Mixtral", 1.0, 0, "Deterministic") + ";");
            }

            if (_variant.Projector?.Moe is SideMoeModel pm)
            {
                _writer.Line("private static readonly " + Modules + "MoeOptions ProjectorMoeOptions = " + MoeOptions(pm.Experts, pm.TopK, "Mixtral", 1.0, 0, "Deterministic") + ";");
            }

            if (_variant.Vision?.Scales.Count > 1)
            {
                var items = new List<string>();
                foreach (int scale in _variant.Vision.Scales) items.Add(SourceWriter.Int(scale));
                _writer.Line("private static readonly int[] S2Scales = { " + string.Join(", ", items) + " };");
            }

            _writer.Line();
            _writer.Summary("Every tensor " + _variant.Name + " reads from a checkpoint: key, shape (PyTorch order) and role.");
            _writer.Line("public static " + Rt + "Checkpoints.WeightManifest Manifest { get; } = CreateManifest();");
            _writer.Line();
            _writer.Summary("What the generic pipeline needs to know about " + _variant.Name + " at run time.");
            _writer.Line("public static " + Modules + "ModelDescription ModelDescription { get; } = new " + Modules + "ModelDescription");
            _writer.Line("{");
            _writer.Indent();
            _writer.Line("Name = " + cst + ".Name,");
            _writer.Line("DisplayName = " + cst + ".DisplayName,");
            _writer.Line("LlmFamily = " + cst + ".LlmFamily,");
            _writer.Line("VocabSize = " + cst + ".VocabSize,");
            _writer.Line("TokenizerSize = " + cst + ".TokenizerSize,");
            _writer.Line("HiddenSize = " + cst + ".HiddenSize,");
            _writer.Line("Layers = " + cst + ".Layers,");
            _writer.Line("Heads = " + cst + ".Heads,");
            _writer.Line("KvHeads = " + cst + ".KvHeads,");
            _writer.Line("HeadDim = " + cst + ".HeadDim,");
            _writer.Line("MaxPositions = " + cst + ".MaxPositions,");
            _writer.Line("MoeLayers = " + cst + ".MoeLayers.ToArray(),");
            _writer.Line("Experts = " + cst + ".Experts,");
            _writer.Line("TopK = " + cst + ".TopK,");
            _writer.Line("TokenizerKind = " + cst + ".TokenizerKind,");
            _writer.Line("EosIds = " + cst + ".EosIds.ToArray(),");
            _writer.Line("BosId = " + cst + ".BosId,");
            _writer.Line("PromptTemplate = " + cst + ".PromptTemplate,");
            _writer.Line("VisionTower = " + cst + ".VisionTower,");
            if (_variant.HasVision) WriteImageDescription(cst);
            else WriteTextOnlyDescription(cst);
            _writer.Line("TotalParameters = " + cst + ".TotalParameters,");
            _writer.Line("ActivatedParameters = " + cst + ".ActivatedParameters,");
            _writer.Unindent();
            _writer.Line("};");
            _writer.Line();
        }

        /// <summary>No tower: no image size, preprocessing or scales.</summary>
        private void WriteTextOnlyDescription(string cst)
        {
            _writer.Line("ImageSize = 0,");
            _writer.Line("ImageTokens = " + cst + ".ImageTokens,");
            _writer.Line("ImageMean = global::System.Array.Empty<float>(),");
            _writer.Line("ImageStd = global::System.Array.Empty<float>(),");
            _writer.Line("VisionScales = global::System.Array.Empty<int>(),");
        }

        private static string MoeOptions(int experts, int topK, string routing, double evalCapacity, int minCapacity, string second) =>
            "new " + Modules + "MoeOptions(" + SourceWriter.Int(experts) + ", " + SourceWriter.Int(topK) + ", " + Modules + "MoeRoutingKind." + routing +
            ", " + SourceWriter.Double(evalCapacity) + ", " + SourceWriter.Int(minCapacity) + ", " + Modules + "SecondExpertPolicy." + second + ")";

        private string BlockType(int layer) => _variant.IsMoeLayer(layer) ? "MoeBlock" : "DenseBlock";

        private void WriteFieldsAndConstructor(string cst)
        {
            _writer.Line("private readonly global::System.IDisposable? _ownedWeights;");
            _writer.Line("private readonly global::System.IDisposable? _ownedCheckpoint;");
            _writer.Line();
            _writer.Line("/// <summary>");
            _writer.Line("/// Builds the modules from tensors bound to <see cref=\"Manifest\"/> (every key of the manifest must be present).");
            _writer.Line("/// The caller keeps ownership of <paramref name=\"weights\"/>; the modules prepare their tensors for");
            _writer.Line("/// <paramref name=\"backend\"/> (upload, f32 norms and biases) as they are built.");
            _writer.Line("/// </summary>");
            _writer.Open("public " + _variant.Name + "(" + Weights + " weights, " + Backend + " backend)");
            _writer.Line("global::System.ArgumentNullException.ThrowIfNull(weights);");
            _writer.Line("global::System.ArgumentNullException.ThrowIfNull(backend);");
            _writer.Line("Embedding = new " + Modules + "TokenEmbedding(backend, Weight(weights, " + SourceWriter.Literal(_names.Embedding) + "));");
            for (int layer = 0; layer < Llm.Layers; layer++)
            {
                _writer.Line("Block" + SourceWriter.Int(layer) + " = new " + BlockType(layer) + "(weights, backend, " + SourceWriter.Literal(_names.LayerPrefix(layer)) + ", " + SourceWriter.Int(layer) + ");");
            }

            _writer.Line("FinalNorm = " + NormExpression(SourceWriter.Literal(_names.FinalNorm), LayerNormLlm, SourceWriter.Float(Llm.NormEps)) + ";");
            _writer.Line("LmHead = Dense(weights, backend, " + SourceWriter.Literal(_names.LmHead) + ", bias: " + SourceWriter.Bool(Llm.LmHeadBias) + ");");
            if (_variant.HasVision) WriteVisionConstruction();
            _writer.Close();
            _writer.Line();
            _writer.Line("private " + _variant.Name + "(" + Weights + " weights, " + Backend + " backend, global::System.IDisposable ownedWeights, global::System.IDisposable ownedCheckpoint)");
            _writer.Line("    : this(weights, backend)");
            _writer.Open("");
            _writer.Line("_ownedWeights = ownedWeights;");
            _writer.Line("_ownedCheckpoint = ownedCheckpoint;");
            _writer.Close();
            _writer.Line();
            _writer.Line("public " + Modules + "ModelDescription Description => ModelDescription;");
            _writer.Line();
            _writer.Line("/// <summary>" + SourceWriter.Xml(_names.Embedding) + " [" + SourceWriter.Int(Llm.VocabSize) + ", " + Width + "]</summary>");
            _writer.Line("public " + Modules + "TokenEmbedding Embedding { get; }");
            for (int layer = 0; layer < Llm.Layers; layer++)
            {
                string kind = _variant.IsMoeLayer(layer) ? "MoE FFN, top-" + SourceWriter.Int(_variant.Moe!.TopK) + " of " + SourceWriter.Int(_variant.Moe.Experts) + " experts" : "dense FFN";
                _writer.Line("/// <summary>Layer " + SourceWriter.Int(layer) + " (" + kind + "), keys " + SourceWriter.Xml(_names.LayerPrefix(layer)) + "*</summary>");
                _writer.Line("public " + BlockType(layer) + " Block" + SourceWriter.Int(layer) + " { get; }");
            }

            _writer.Line("/// <summary>" + SourceWriter.Xml(_names.FinalNorm) + ".* [" + Width + "]</summary>");
            _writer.Line("public " + LlmNormType + " FinalNorm { get; }");
            _writer.Line("/// <summary>lm_head.weight [" + SourceWriter.Int(Llm.VocabSize) + ", " + Width + "]" + (Llm.LmHeadBias ? ", lm_head.bias" : "") + "</summary>");
            _writer.Line("public " + Modules + "Linear LmHead { get; }");
            _writer.Summary("Storage type of the LLM weights as bound (lm_head's); picks the default KV-cache precision.");
            _writer.Line("public " + Rt + "Tensors.DType LlmWeightDType => LmHead.Weight.DType;");
            if (_variant.HasVision) WriteVisionProperties();
            _writer.Line();
        }

        private void WriteLoad()
        {
            _writer.Line("/// <summary>");
            _writer.Line("/// Opens a checkpoint folder (or file), binds it to <see cref=\"Manifest\"/> and builds the model. Every missing,");
            _writer.Line("/// unexpected, wrong-shape or wrong-dtype tensor is reported at once by the binder's exception. The returned");
            _writer.Line("/// model owns the checkpoint mapping: dispose it when done.");
            _writer.Line("/// </summary>");
            _writer.Open("public static " + _variant.Name + " Load(string folder, " + Backend + " backend, " + Rt + "Checkpoints.BindOptions? options = null)");
            _writer.Line("var checkpoint = " + Rt + "Checkpoints.CheckpointFolder.Open(folder);");
            _writer.Open("try");
            _writer.Line("var weights = " + Rt + "Checkpoints.WeightBinder.Bind(Manifest, checkpoint, options);");
            _writer.Open("try");
            _writer.Line("return new " + _variant.Name + "(weights, backend, weights, checkpoint);");
            _writer.Close();
            _writer.Open("catch");
            _writer.Line("weights.Dispose();");
            _writer.Line("throw;");
            _writer.Close();
            _writer.Close();
            _writer.Open("catch");
            _writer.Line("checkpoint.Dispose();");
            _writer.Line("throw;");
            _writer.Close();
            _writer.Close();
            _writer.Line();
            _writer.Line("/// <summary>");
            _writer.Line("/// Opens a checkpoint folder, file or hub-cache repository id (ORG/NAME) with everything a run needs: config.json");
            _writer.Line("/// and tokenizer checked against this variant, the vision tower from the checkpoint or its own folder, the pipeline.");
            _writer.Line("/// </summary>");
            _writer.Line("public static " + Rt + "Generation.LoadedModel Open(string weights, " + Rt + "Generation.ModelLoadOptions? options = null) =>");
            _writer.Line("    " + Rt + "Generation.LoadedModel.Open(ModelDescription, Manifest, Load, weights, options);");
            _writer.Line();
            _writer.Summary("A KV cache sized for this variant's layers and key/value width.");
            _writer.Line("public static " + Modules + "KvCache CreateCache(" + Backend + " backend, int capacity) =>");
            _writer.Line("    new " + Modules + "KvCache(backend, " + SourceWriter.Int(Llm.Layers) + ", capacity, " + SourceWriter.Int(Llm.KvHeads * Llm.HeadDim) + ");");
            _writer.Line();
            _writer.Open("public void Dispose()");
            _writer.Line("_ownedWeights?.Dispose();");
            _writer.Line("_ownedCheckpoint?.Dispose();");
            _writer.Close();
            _writer.Line();
        }

        private void WriteForward()
        {
            string v = SourceWriter.Int(Llm.VocabSize);
            _writer.Summary("Token ids -> embeddings [T, " + Width + "].");
            _writer.Line("public " + Tensor + " EmbedTokens(" + Context + " context, global::System.ReadOnlySpan<int> ids) => Embedding.Forward(context, ids);");
            _writer.Line();
            if (_variant.HasVision) WriteEncodeImage();
            _writer.Line("/// <summary>");
            _writer.Line("/// Embeddings [T, " + Width + "] at positions context.StartPosition.. -> logits [T, " + v + "]. Appends T rows to the KV");
            _writer.Line("/// cache of every layer and sets the cache length. The input tensor is not modified.");
            _writer.Line("/// </summary>");
            _writer.Open("public " + Tensor + " Forward(" + Context + " context, " + Tensor + " embeddings)");
            _writer.Line("global::System.ArgumentNullException.ThrowIfNull(context);");
            _writer.Line("global::System.ArgumentNullException.ThrowIfNull(embeddings);");
            _writer.Line("if (embeddings.Rank != 2 || embeddings.Columns != " + Width + ")");
            _writer.Line("    throw new global::System.ArgumentException(\"" + _variant.Name + " expects embeddings [T, " + Width + "], got \" + " + Tensor + ".FormatShape(embeddings.Shape), nameof(embeddings));");
            _writer.Line("int rows = embeddings.Rows;");
            _writer.Line(Tensor + " x = context.Backend.Allocate(" + DType + ".F32, rows, " + Width + "); // [T, " + Width + "] residual stream");
            _writer.Line("context.Backend.Copy(embeddings, x);");
            for (int layer = 0; layer < Llm.Layers; layer++)
            {
                string kind = _variant.IsMoeLayer(layer) ? "attention + MoE" : "attention + dense FFN";
                _writer.Line("x = Block" + SourceWriter.Int(layer) + ".Forward(context, x); // [T, " + Width + "] layer " + SourceWriter.Int(layer) + ": " + kind);
            }

            _writer.Line("// Generation reads only the last position's logits (of each sequence when batched): skip the final norm and");
            _writer.Line("// lm_head for the other rows.");
            _writer.Line(Tensor + " last = context.LogitRows(x); // [T, 1 or sequences, " + Width + "]");
            _writer.Line(Tensor + " normed = FinalNorm.Forward(context, last); // [T, 1 or sequences, " + Width + "]");
            _writer.Line("if (!global::System.Object.ReferenceEquals(last, x)) " + Release + "last);");
            _writer.Line(Release + "x);");
            _writer.Line(Tensor + " logits = LmHead.Forward(context, normed); // [T, 1 or sequences, " + v + "]");
            _writer.Line(Release + "normed);");
            _writer.Line("if (context.Cache is not null) context.Cache.Length = context.StartPosition + rows;");
            _writer.Line("context.AdvanceSegmentCaches();");
            _writer.Line("return logits;");
            _writer.Close();
            _writer.Line();
        }

        private void WriteHelpers()
        {
            _writer.Line("private static " + Tensor + " Weight(" + Weights + " weights, string key) => weights[key];");
            _writer.Line();
            _writer.Line("private static " + Modules + "Linear Dense(" + Weights + " weights, " + Backend + " backend, string name, bool bias) =>");
            _writer.Line("    new " + Modules + "Linear(backend, Weight(weights, name + \".weight\"), bias ? Weight(weights, name + \".bias\") : null);");
            _writer.Line();
            if (LayerNormLlm || _variant.HasVision)
            {
                _writer.Line("private static " + Modules + "LayerNorm LayerNormAt(" + Weights + " weights, " + Backend + " backend, string name, float epsilon) =>");
                _writer.Line("    new " + Modules + "LayerNorm(backend, Weight(weights, name + \".weight\"), Weight(weights, name + \".bias\"), epsilon);");
                _writer.Line();
            }

            if (!LayerNormLlm)
            {
                _writer.Line("private static " + Modules + "RmsNorm RmsNormAt(" + Weights + " weights, " + Backend + " backend, string name, float epsilon) =>");
                _writer.Line("    new " + Modules + "RmsNorm(backend, Weight(weights, name + \".weight\"), epsilon);");
                _writer.Line();
            }

            var parts = _names.FfnParts;
            _writer.Summary("The family's FFN (" + Llm.FfnKind.SpecName() + ") under a key prefix: a dense layer's MLP or one expert.");
            _writer.Open($"private static {DenseFfnType} FeedForwardAt({Weights} weights, {Backend} backend, string prefix)");
            if (_ffn.Activation is string ffnActivation)
            {
                _writer.Line($"return new {DenseFfnType}({DenseAtPrefix(parts.A)}, {DenseAtPrefix(parts.B)}, {Activation}.{ffnActivation});");
            }
            else
            {
                _writer.Line($"return new {DenseFfnType}({DenseAtPrefix(parts.A)}, {DenseAtPrefix(parts.B)}, {DenseAtPrefix(parts.Out)});");
            }

            _writer.Close();
            _writer.Line();
            if (HasMoeBlocks && _names.OwnExpertNames)
            {
                var expert = _names.ExpertParts;
                _writer.Summary($"A {_family.DisplayName} expert: gate = {expert.A}, up = {expert.B}, down = {expert.Out}.");
                _writer.Open($"private static {DenseFfnType} MixtralExpertAt({Weights} weights, {Backend} backend, string prefix)");
                _writer.Line($"return new {DenseFfnType}({DenseAtPrefix(expert.A)}, {DenseAtPrefix(expert.B)}, {DenseAtPrefix(expert.Out)});");
                _writer.Close();
                _writer.Line();
            }

            WriteManifestFactory();
        }

        /// <summary>The generated call that binds one FFN linear under the method's <c>prefix</c>, with the family's MLP bias.</summary>
        private string DenseAtPrefix(string name) => $"Dense(weights, backend, prefix + \"{name}\", bias: {SourceWriter.Bool(Llm.MlpBias)})";

        private string NormExpression(string nameExpression, bool layerNorm, string epsilon) =>
            (layerNorm ? "LayerNormAt" : "RmsNormAt") + "(weights, backend, " + nameExpression + ", " + epsilon + ")";
    }
}
