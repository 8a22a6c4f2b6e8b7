using System.Collections.Generic;
using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Emit
{
    /// <summary>The model class: statics, description, constructor, loading, forward pass and helpers.</summary>
    internal sealed partial class VariantEmitter
    {
        private void WriteModel()
        {
            string name = _v.Name;
            string cst = name + "Constants";
            _w.Line("/// <summary>");
            _w.Line("/// " + SourceWriter.Xml(SourceWriter.Ascii(_v.DisplayName)) + ": " + SourceWriter.Xml(SourceWriter.Ascii(_v.Description)));
            _w.Line("/// Layers: " + LayerMap(_v) + " (M = MoE, D = dense). Compiled from " + _v.FileName + ".");
            if (!_v.HasVision) _w.Line("/// Text-only: no vision tower and no projector, so it takes token ids only and offers no image encoding.");
            _w.Line("/// </summary>");
            string model = _v.HasVision ? "IVisionLanguageModel" : "ILanguageModel";
            _w.Open("public sealed class " + name + " : " + Modules + model + ", global::System.IDisposable");
            WriteStatics(cst);
            WriteFieldsAndConstructor(cst);
            WriteLoad();
            WriteForward();
            WriteHelpers();
            if (HasMoeBlocks) WriteBlock(moe: true);
            if (HasDenseBlocks) WriteBlock(moe: false);
            if (_v.HasVision) WriteVisionTower();
            _w.Close();
        }

        private void WriteStatics(string cst)
        {
            _w.Line("private static readonly " + Modules + "AttentionGeometry Geometry = new " + Modules + "AttentionGeometry(" +
                SourceWriter.Int(Llm.Heads) + ", " + SourceWriter.Int(Llm.KvHeads) + ", " + SourceWriter.Int(Llm.HeadDim) + ", " +
                SourceWriter.Int(Llm.RotaryDims) + ", " + SourceWriter.Float(Llm.RopeTheta) + ");");
            if (_v.Moe is MoeModel moe)
            {
                _w.Line("private static readonly " + Modules + "MoeOptions LlmMoeOptions = " + MoeOptions(moe.Experts, moe.TopK,
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

            if (_v.Vision?.Moe is SideMoeModel vm)
            {
                _w.Line("private static readonly " + Modules + "MoeOptions VisionMoeOptions = " + MoeOptions(vm.Experts, vm.TopK, "Mixtral", 1.0, 0, "Deterministic") + ";");
            }

            if (_v.Projector?.Moe is SideMoeModel pm)
            {
                _w.Line("private static readonly " + Modules + "MoeOptions ProjectorMoeOptions = " + MoeOptions(pm.Experts, pm.TopK, "Mixtral", 1.0, 0, "Deterministic") + ";");
            }

            if (_v.Vision?.Scales.Count > 1)
            {
                var items = new List<string>();
                foreach (int scale in _v.Vision.Scales) items.Add(SourceWriter.Int(scale));
                _w.Line("private static readonly int[] S2Scales = { " + string.Join(", ", items) + " };");
            }

            _w.Line();
            _w.Summary("Every tensor " + _v.Name + " reads from a checkpoint: key, shape (PyTorch order) and role.");
            _w.Line("public static " + Rt + "Checkpoints.WeightManifest Manifest { get; } = CreateManifest();");
            _w.Line();
            _w.Summary("What the generic pipeline needs to know about " + _v.Name + " at run time.");
            _w.Line("public static " + Modules + "ModelDescription ModelDescription { get; } = new " + Modules + "ModelDescription");
            _w.Line("{");
            _w.Indent();
            _w.Line("Name = " + cst + ".Name,");
            _w.Line("DisplayName = " + cst + ".DisplayName,");
            _w.Line("LlmFamily = " + cst + ".LlmFamily,");
            _w.Line("VocabSize = " + cst + ".VocabSize,");
            _w.Line("TokenizerSize = " + cst + ".TokenizerSize,");
            _w.Line("HiddenSize = " + cst + ".HiddenSize,");
            _w.Line("Layers = " + cst + ".Layers,");
            _w.Line("Heads = " + cst + ".Heads,");
            _w.Line("KvHeads = " + cst + ".KvHeads,");
            _w.Line("HeadDim = " + cst + ".HeadDim,");
            _w.Line("MaxPositions = " + cst + ".MaxPositions,");
            _w.Line("MoeLayers = " + cst + ".MoeLayers.ToArray(),");
            _w.Line("Experts = " + cst + ".Experts,");
            _w.Line("TopK = " + cst + ".TopK,");
            _w.Line("TokenizerKind = " + cst + ".TokenizerKind,");
            _w.Line("EosIds = " + cst + ".EosIds.ToArray(),");
            _w.Line("BosId = " + cst + ".BosId,");
            _w.Line("PromptTemplate = " + cst + ".PromptTemplate,");
            _w.Line("VisionTower = " + cst + ".VisionTower,");
            if (_v.HasVision) WriteImageDescription(cst);
            else WriteTextOnlyDescription(cst);
            _w.Line("TotalParameters = " + cst + ".TotalParameters,");
            _w.Line("ActivatedParameters = " + cst + ".ActivatedParameters,");
            _w.Unindent();
            _w.Line("};");
            _w.Line();
        }

        /// <summary>No tower: no image size, preprocessing or scales.</summary>
        private void WriteTextOnlyDescription(string cst)
        {
            _w.Line("ImageSize = 0,");
            _w.Line("ImageTokens = " + cst + ".ImageTokens,");
            _w.Line("ImageMean = global::System.Array.Empty<float>(),");
            _w.Line("ImageStd = global::System.Array.Empty<float>(),");
            _w.Line("VisionScales = global::System.Array.Empty<int>(),");
        }

        private static string MoeOptions(int experts, int topK, string routing, double evalCapacity, int minCapacity, string second) =>
            "new " + Modules + "MoeOptions(" + SourceWriter.Int(experts) + ", " + SourceWriter.Int(topK) + ", " + Modules + "MoeRoutingKind." + routing +
            ", " + SourceWriter.Double(evalCapacity) + ", " + SourceWriter.Int(minCapacity) + ", " + Modules + "SecondExpertPolicy." + second + ")";

        private string BlockType(int layer) => _v.IsMoeLayer(layer) ? "MoeBlock" : "DenseBlock";

        private void WriteFieldsAndConstructor(string cst)
        {
            _w.Line("private readonly global::System.IDisposable? _ownedWeights;");
            _w.Line("private readonly global::System.IDisposable? _ownedCheckpoint;");
            _w.Line();
            _w.Line("/// <summary>");
            _w.Line("/// Builds the modules from tensors bound to <see cref=\"Manifest\"/> (every key of the manifest must be present).");
            _w.Line("/// The caller keeps ownership of <paramref name=\"weights\"/>; the modules prepare their tensors for");
            _w.Line("/// <paramref name=\"backend\"/> (upload, f32 norms and biases) as they are built.");
            _w.Line("/// </summary>");
            _w.Open("public " + _v.Name + "(" + Weights + " weights, " + Backend + " backend)");
            _w.Line("global::System.ArgumentNullException.ThrowIfNull(weights);");
            _w.Line("global::System.ArgumentNullException.ThrowIfNull(backend);");
            _w.Line("Embedding = new " + Modules + "TokenEmbedding(backend, Weight(weights, " + SourceWriter.Literal(_n.Embedding) + "));");
            for (int layer = 0; layer < Llm.Layers; layer++)
            {
                _w.Line("Block" + SourceWriter.Int(layer) + " = new " + BlockType(layer) + "(weights, backend, " + SourceWriter.Literal(_n.LayerPrefix(layer)) + ", " + SourceWriter.Int(layer) + ");");
            }

            _w.Line("FinalNorm = " + NormExpression(SourceWriter.Literal(_n.FinalNorm), LayerNormLlm, SourceWriter.Float(Llm.NormEps)) + ";");
            _w.Line("LmHead = Dense(weights, backend, " + SourceWriter.Literal(_n.LmHead) + ", bias: " + SourceWriter.Bool(Llm.LmHeadBias) + ");");
            if (_v.HasVision) WriteVisionConstruction();
            _w.Close();
            _w.Line();
            _w.Line("private " + _v.Name + "(" + Weights + " weights, " + Backend + " backend, global::System.IDisposable ownedWeights, global::System.IDisposable ownedCheckpoint)");
            _w.Line("    : this(weights, backend)");
            _w.Open("");
            _w.Line("_ownedWeights = ownedWeights;");
            _w.Line("_ownedCheckpoint = ownedCheckpoint;");
            _w.Close();
            _w.Line();
            _w.Line("public " + Modules + "ModelDescription Description => ModelDescription;");
            _w.Line();
            _w.Line("/// <summary>" + SourceWriter.Xml(_n.Embedding) + " [" + SourceWriter.Int(Llm.VocabSize) + ", " + H + "]</summary>");
            _w.Line("public " + Modules + "TokenEmbedding Embedding { get; }");
            for (int layer = 0; layer < Llm.Layers; layer++)
            {
                string kind = _v.IsMoeLayer(layer) ? "MoE FFN, top-" + SourceWriter.Int(_v.Moe!.TopK) + " of " + SourceWriter.Int(_v.Moe.Experts) + " experts" : "dense FFN";
                _w.Line("/// <summary>Layer " + SourceWriter.Int(layer) + " (" + kind + "), keys " + SourceWriter.Xml(_n.LayerPrefix(layer)) + "*</summary>");
                _w.Line("public " + BlockType(layer) + " Block" + SourceWriter.Int(layer) + " { get; }");
            }

            _w.Line("/// <summary>" + SourceWriter.Xml(_n.FinalNorm) + ".* [" + H + "]</summary>");
            _w.Line("public " + LlmNormType + " FinalNorm { get; }");
            _w.Line("/// <summary>lm_head.weight [" + SourceWriter.Int(Llm.VocabSize) + ", " + H + "]" + (Llm.LmHeadBias ? ", lm_head.bias" : "") + "</summary>");
            _w.Line("public " + Modules + "Linear LmHead { get; }");
            _w.Summary("Storage type of the LLM weights as bound (lm_head's); picks the default KV-cache precision.");
            _w.Line("public " + Rt + "Tensors.DType LlmWeightDType => LmHead.Weight.DType;");
            if (_v.HasVision) WriteVisionProperties();
            _w.Line();
        }

        private void WriteLoad()
        {
            _w.Line("/// <summary>");
            _w.Line("/// Opens a checkpoint folder (or file), binds it to <see cref=\"Manifest\"/> and builds the model. Every missing,");
            _w.Line("/// unexpected, wrong-shape or wrong-dtype tensor is reported at once by the binder's exception. The returned");
            _w.Line("/// model owns the checkpoint mapping: dispose it when done.");
            _w.Line("/// </summary>");
            _w.Open("public static " + _v.Name + " Load(string folder, " + Backend + " backend, " + Rt + "Checkpoints.BindOptions? options = null)");
            _w.Line("var checkpoint = " + Rt + "Checkpoints.CheckpointFolder.Open(folder);");
            _w.Open("try");
            _w.Line("var weights = " + Rt + "Checkpoints.WeightBinder.Bind(Manifest, checkpoint, options);");
            _w.Open("try");
            _w.Line("return new " + _v.Name + "(weights, backend, weights, checkpoint);");
            _w.Close();
            _w.Open("catch");
            _w.Line("weights.Dispose();");
            _w.Line("throw;");
            _w.Close();
            _w.Close();
            _w.Open("catch");
            _w.Line("checkpoint.Dispose();");
            _w.Line("throw;");
            _w.Close();
            _w.Close();
            _w.Line();
            _w.Line("/// <summary>");
            _w.Line("/// Opens a checkpoint folder, file or hub-cache repository id (ORG/NAME) with everything a run needs: config.json");
            _w.Line("/// and tokenizer checked against this variant, the vision tower from the checkpoint or its own folder, the pipeline.");
            _w.Line("/// </summary>");
            _w.Line("public static " + Rt + "Generation.LoadedModel Open(string weights, " + Rt + "Generation.ModelLoadOptions? options = null) =>");
            _w.Line("    " + Rt + "Generation.LoadedModel.Open(ModelDescription, Manifest, Load, weights, options);");
            _w.Line();
            _w.Summary("A KV cache sized for this variant's layers and key/value width.");
            _w.Line("public static " + Modules + "KvCache CreateCache(" + Backend + " backend, int capacity) =>");
            _w.Line("    new " + Modules + "KvCache(backend, " + SourceWriter.Int(Llm.Layers) + ", capacity, " + SourceWriter.Int(Llm.KvHeads * Llm.HeadDim) + ");");
            _w.Line();
            _w.Open("public void Dispose()");
            _w.Line("_ownedWeights?.Dispose();");
            _w.Line("_ownedCheckpoint?.Dispose();");
            _w.Close();
            _w.Line();
        }

        private void WriteForward()
        {
            string v = SourceWriter.Int(Llm.VocabSize);
            _w.Summary("Token ids -> embeddings [T, " + H + "].");
            _w.Line("public " + Tensor + " EmbedTokens(" + Context + " context, global::System.ReadOnlySpan<int> ids) => Embedding.Forward(context, ids);");
            _w.Line();
            if (_v.HasVision) WriteEncodeImage();
            _w.Line("/// <summary>");
            _w.Line("/// Embeddings [T, " + H + "] at positions context.StartPosition.. -> logits [T, " + v + "]. Appends T rows to the KV");
            _w.Line("/// cache of every layer and sets the cache length. The input tensor is not modified.");
            _w.Line("/// </summary>");
            _w.Open("public " + Tensor + " Forward(" + Context + " context, " + Tensor + " embeddings)");
            _w.Line("global::System.ArgumentNullException.ThrowIfNull(context);");
            _w.Line("global::System.ArgumentNullException.ThrowIfNull(embeddings);");
            _w.Line("if (embeddings.Rank != 2 || embeddings.Columns != " + H + ")");
            _w.Line("    throw new global::System.ArgumentException(\"" + _v.Name + " expects embeddings [T, " + H + "], got \" + " + Tensor + ".FormatShape(embeddings.Shape), nameof(embeddings));");
            _w.Line("int rows = embeddings.Rows;");
            _w.Line(Tensor + " x = context.Backend.Allocate(" + DType + ".F32, rows, " + H + "); // [T, " + H + "] residual stream");
            _w.Line("context.Backend.Copy(embeddings, x);");
            for (int layer = 0; layer < Llm.Layers; layer++)
            {
                string kind = _v.IsMoeLayer(layer) ? "attention + MoE" : "attention + dense FFN";
                _w.Line("x = Block" + SourceWriter.Int(layer) + ".Forward(context, x); // [T, " + H + "] layer " + SourceWriter.Int(layer) + ": " + kind);
            }

            _w.Line("// Generation reads only the last position's logits (of each sequence when batched): skip the final norm and");
            _w.Line("// lm_head for the other rows.");
            _w.Line(Tensor + " last = context.LogitRows(x); // [T, 1 or sequences, " + H + "]");
            _w.Line(Tensor + " normed = FinalNorm.Forward(context, last); // [T, 1 or sequences, " + H + "]");
            _w.Line("if (!global::System.Object.ReferenceEquals(last, x)) " + Release + "last);");
            _w.Line(Release + "x);");
            _w.Line(Tensor + " logits = LmHead.Forward(context, normed); // [T, 1 or sequences, " + v + "]");
            _w.Line(Release + "normed);");
            _w.Line("if (context.Cache is not null) context.Cache.Length = context.StartPosition + rows;");
            _w.Line("context.AdvanceSegmentCaches();");
            _w.Line("return logits;");
            _w.Close();
            _w.Line();
        }

        private void WriteHelpers()
        {
            _w.Line("private static " + Tensor + " Weight(" + Weights + " weights, string key) => weights[key];");
            _w.Line();
            _w.Line("private static " + Modules + "Linear Dense(" + Weights + " weights, " + Backend + " backend, string name, bool bias) =>");
            _w.Line("    new " + Modules + "Linear(backend, Weight(weights, name + \".weight\"), bias ? Weight(weights, name + \".bias\") : null);");
            _w.Line();
            if (LayerNormLlm || _v.HasVision)
            {
                _w.Line("private static " + Modules + "LayerNorm LayerNormAt(" + Weights + " weights, " + Backend + " backend, string name, float epsilon) =>");
                _w.Line("    new " + Modules + "LayerNorm(backend, Weight(weights, name + \".weight\"), Weight(weights, name + \".bias\"), epsilon);");
                _w.Line();
            }

            if (!LayerNormLlm)
            {
                _w.Line("private static " + Modules + "RmsNorm RmsNormAt(" + Weights + " weights, " + Backend + " backend, string name, float epsilon) =>");
                _w.Line("    new " + Modules + "RmsNorm(backend, Weight(weights, name + \".weight\"), epsilon);");
                _w.Line();
            }

            var parts = _n.FfnParts;
            _w.Summary("The family's FFN (" + Llm.FfnKind.SpecName() + ") under a key prefix: a dense layer's MLP or one expert.");
            _w.Open($"private static {DenseFfnType} FeedForwardAt({Weights} weights, {Backend} backend, string prefix)");
            if (_ffn.Activation is string ffnActivation)
            {
                _w.Line($"return new {DenseFfnType}({DenseAtPrefix(parts.A)}, {DenseAtPrefix(parts.B)}, {Activation}.{ffnActivation});");
            }
            else
            {
                _w.Line($"return new {DenseFfnType}({DenseAtPrefix(parts.A)}, {DenseAtPrefix(parts.B)}, {DenseAtPrefix(parts.Out)});");
            }

            _w.Close();
            _w.Line();
            if (HasMoeBlocks && _n.OwnExpertNames)
            {
                var expert = _n.ExpertParts;
                _w.Summary($"A {_family.DisplayName} expert: gate = {expert.A}, up = {expert.B}, down = {expert.Out}.");
                _w.Open($"private static {DenseFfnType} MixtralExpertAt({Weights} weights, {Backend} backend, string prefix)");
                _w.Line($"return new {DenseFfnType}({DenseAtPrefix(expert.A)}, {DenseAtPrefix(expert.B)}, {DenseAtPrefix(expert.Out)});");
                _w.Close();
                _w.Line();
            }

            WriteManifestFactory();
        }

        /// <summary>The generated call that binds one FFN linear under the method's <c>prefix</c>, with the family's MLP bias.</summary>
        private string DenseAtPrefix(string name) => $"Dense(weights, backend, prefix + \"{name}\", bias: {SourceWriter.Bool(Llm.MlpBias)})";

        private string NormExpression(string nameExpression, bool layerNorm, string epsilon) =>
            (layerNorm ? "LayerNormAt" : "RmsNormAt") + "(weights, backend, " + nameExpression + ", " + epsilon + ")";
    }
}
