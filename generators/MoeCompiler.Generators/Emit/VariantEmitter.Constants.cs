using System.Collections.Generic;
using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Emit
{
    /// <summary>The constants class: every spec value and the derived parameter counts.</summary>
    internal sealed partial class VariantEmitter
    {
        private void Const(string type, string name, string value, string key)
        {
            _writer.Line("/// <summary>Spec key: " + SourceWriter.Xml(key) + ".</summary>");
            _writer.Line("public const " + type + " " + name + " = " + value + ";");
        }

        private void ConstSpan(string name, IReadOnlyList<int> values, string key)
        {
            var items = new string[values.Count];
            for (int i = 0; i < items.Length; i++) items[i] = SourceWriter.Int(values[i]);
            _writer.Line("/// <summary>Spec key: " + SourceWriter.Xml(key) + ".</summary>");
            _writer.Line("public static global::System.ReadOnlySpan<int> " + name + " => new int[] { " + string.Join(", ", items) + " };");
        }

        private void WriteConstants()
        {
            string s(string x) => SourceWriter.Literal(x);
            string i(int x) => SourceWriter.Int(x);
            MoeModel? moe = _variant.Moe;
            _writer.Summary("Every hyper-parameter of " + _variant.Name + " as written in " + _variant.FileName + " (the spec key is in each comment).");
            _writer.Open("public static class " + _variant.Name + "Constants");
            Const("string", "Name", s(_variant.Name), "name");
            Const("string", "DisplayName", s(_variant.DisplayName), "displayName");
            Const("string", "Description", s(_variant.Description), "description");
            Const("string", "SpecFile", s(_variant.FileName), "(the spec file's name)");
            _writer.Line();
            Const("string", "LlmFamily", s(Llm.Family.SpecName()), "llm.family");
            Const("int", "VocabSize", i(Llm.VocabSize), "llm.vocabSize");
            Const("int", "TokenizerSize", i(Llm.TokenizerSize), "llm.tokenizerSize");
            Const("int", "HiddenSize", i(Llm.HiddenSize), "llm.hiddenSize");
            Const("int", "Layers", i(Llm.Layers), "llm.layers");
            Const("int", "Heads", i(Llm.Heads), "llm.heads");
            Const("int", "KvHeads", i(Llm.KvHeads), "llm.kvHeads");
            Const("int", "HeadDim", i(Llm.HeadDim), "llm.headDim");
            Const("int", "FfnSize", i(Llm.FfnSize), "llm.ffnSize");
            Const("string", "FfnKind", s(Llm.FfnKind.SpecName()), "llm.ffnKind");
            Const("string", "Norm", s(Llm.Norm.SpecName()), "llm.norm");
            Const("float", "NormEpsilon", SourceWriter.Float(Llm.NormEps), "llm.normEps");
            Const("float", "RopeTheta", SourceWriter.Float(Llm.RopeTheta), "llm.ropeTheta");
            Const("double", "RotaryFraction", SourceWriter.Double(Llm.RotaryFraction), "llm.rotaryFraction");
            Const("int", "RotaryDims", i(Llm.RotaryDims), "llm.headDim x llm.rotaryFraction");
            Const("bool", "QkvBias", SourceWriter.Bool(Llm.QkvBias), "llm.qkvBias");
            Const("bool", "AttnOutBias", SourceWriter.Bool(Llm.AttnOutBias), "llm.attnOutBias");
            Const("bool", "MlpBias", SourceWriter.Bool(Llm.MlpBias), "llm.mlpBias");
            Const("bool", "LmHeadBias", SourceWriter.Bool(Llm.LmHeadBias), "llm.lmHeadBias");
            Const("bool", "ParallelResidual", SourceWriter.Bool(Llm.ParallelResidual), "llm.parallelResidual");
            Const("int", "MaxPositions", i(Llm.MaxPositions), "llm.maxPositions");
            _writer.Line();
            Const("bool", "HasMoe", SourceWriter.Bool(moe is not null), "moe (null for a dense model)");
            Const("int", "Experts", i(moe?.Experts ?? 0), "moe.experts (0 when dense)");
            Const("int", "TopK", i(moe?.TopK ?? 0), "moe.topK (0 when dense)");
            Const("string", "Placement", s(moe?.PlacementText ?? "none"), "moe.placement");
            ConstSpan("MoeLayers", moe is null ? new int[0] : (IReadOnlyList<int>)moe.Layers, "moe.placement, resolved to layer indices");
            Const("string", "LayerMap", s(LayerMap(_variant)), "moe.placement: one letter per layer, M = MoE, D = dense");
            Const("string", "Routing", s(moe?.Routing.SpecName() ?? "none"), "moe.routing");
            Const("double", "CapacityFactor", SourceWriter.Double(moe?.CapacityFactor ?? 0), "moe.capacityFactor");
            Const("double", "EvalCapacityFactor", SourceWriter.Double(moe?.EvalCapacityFactor ?? 0), "moe.evalCapacityFactor");
            Const("int", "MinCapacity", i(moe?.MinCapacity ?? 0), "moe.minCapacity");
            Const("string", "SecondExpert", s(moe?.SecondExpert.SpecName() ?? "none"), "moe.secondExpert");
            Const("bool", "ResidualMoe", SourceWriter.Bool(moe?.Residual ?? false), "moe.residual (PR-MoE)");
            _writer.Line();
            if (_variant.HasVision) WriteVisionConstants();
            else WriteTextOnlyConstants();
            _writer.Line();
            Const("string", "TokenizerKind", s(_variant.Tokenizer.Kind), "tokenizer.kind");
            _writer.Line("/// <summary>Spec key: tokenizer.bos (null: no BOS token).</summary>");
            _writer.Line("public static int? BosId => " + (_variant.Tokenizer.Bos is int bos ? i(bos) : "null") + ";");
            ConstSpan("EosIds", _variant.Tokenizer.Eos, "tokenizer.eos");
            Const("string", "PromptTemplate", s(_variant.Template), "prompt.template");
            Const("string", "CheckpointLayout", s(_variant.Layout.SpecName()), "checkpoint.layout");
            _writer.Line();
            _writer.Line("// Parameter counts. Exact counts are sums over the weight manifest; activated counts leave out the");
            _writer.Line("// experts a token does not use (E - k per MoE layer); the paper formula is MoE-LLaVA appendix A.1.");
            Const("long", "TotalParameters", SourceWriter.Long(_plan.Total), "(derived) every tensor of the manifest: " + SourceWriter.Grouped(_plan.Total));
            Const("long", "ActivatedParameters", SourceWriter.Long(_plan.Activated), "(derived) used per token: " + SourceWriter.Grouped(_plan.Activated));
            Const("long", "LlmParameters", SourceWriter.Long(_plan.Llm), "(derived) LLM only: " + SourceWriter.Grouped(_plan.Llm));
            Const("long", "LlmActivatedParameters", SourceWriter.Long(_plan.LlmActivated), "(derived) LLM only, per token: " + SourceWriter.Grouped(_plan.LlmActivated));
            if (_variant.HasVision)
            {
                Const("long", "VisionParameters", SourceWriter.Long(_plan.Vision), "(derived) the layers of the tower that run: " + SourceWriter.Grouped(_plan.Vision));
                Const("long", "VisionActivatedParameters", SourceWriter.Long(_plan.VisionActivated), "(derived) " + SourceWriter.Grouped(_plan.VisionActivated));
                Const("long", "ProjectorParameters", SourceWriter.Long(_plan.Projector), "(derived) " + SourceWriter.Grouped(_plan.Projector));
                Const("long", "ProjectorActivatedParameters", SourceWriter.Long(_plan.ProjectorActivated), "(derived) " + SourceWriter.Grouped(_plan.ProjectorActivated));
            }

            long paperTotal = WeightPlan.PaperFormula(_variant, false), paperActivated = WeightPlan.PaperFormula(_variant, true);
            Const("long", "PaperTotalParameters", SourceWriter.Long(paperTotal), "(derived) paper formula, LLM: " + SourceWriter.Grouped(paperTotal));
            Const("long", "PaperActivatedParameters", SourceWriter.Long(paperActivated), "(derived) paper formula with E := k: " + SourceWriter.Grouped(paperActivated));
            _writer.Close();
        }

        private void WriteVisionConstants()
        {
            string s(string x) => SourceWriter.Literal(x);
            string i(int x) => SourceWriter.Int(x);
            Const("string", "VisionTower", s(Vision.Tower.SpecName()), "vision.tower");
            Const("int", "ImageSize", i(Vision.ImageSize), "vision.imageSize");
            Const("int", "PatchSize", i(Vision.PatchSize), "vision.patchSize");
            Const("int", "VisionHiddenSize", i(Vision.HiddenSize), "vision.hiddenSize");
            Const("int", "VisionLayers", i(Vision.Layers), "vision.layers");
            Const("int", "VisionHeads", i(Vision.Heads), "vision.heads");
            Const("int", "VisionMlpSize", i(Vision.MlpSize), "vision.mlpSize");
            Const("float", "VisionNormEpsilon", SourceWriter.Float(Vision.NormEps), "vision.normEps");
            Const("int", "VisionSelectLayer", i(Vision.SelectLayer), "vision.selectLayer");
            Const("string", "VisionSelectFeature", s(Vision.SelectFeature.SpecName()), "vision.selectFeature");
            Const("int", "VisionUsedLayers", i(Vision.UsedLayers), "vision.layers and vision.selectLayer: encoder layers that run");
            Const("int", "VisionExperts", i(Vision.Moe?.Experts ?? 0), "vision.moe.experts (0 when dense)");
            Const("int", "VisionTopK", i(Vision.Moe?.TopK ?? 0), "vision.moe.topK (0 when dense)");
            ConstSpan("VisionScales", Vision.Scales, "vision.scales");
            Const("int", "ImageTokens", i(Vision.FeatureRows), "vision.imageSize, patchSize, tower and selectFeature: rows per image");
            Const("int", "ImageFeatureWidth", i(Vision.FeatureWidth), "vision.hiddenSize x the number of vision.scales");
            _writer.Line();
            Const("string", "ProjectorKind", s(Projector.Kind), "projector.kind");
            Const("int", "ProjectorExperts", i(Projector.Moe?.Experts ?? 0), "projector.moe.experts (0 when dense)");
            Const("int", "ProjectorTopK", i(Projector.Moe?.TopK ?? 0), "projector.moe.topK (0 when dense)");
        }

        /// <summary>A text-only variant has no vision keys; the two constants generic code asks every variant for say so.</summary>
        private void WriteTextOnlyConstants()
        {
            Const("string", "VisionTower", SourceWriter.Literal("none"), "vision (null: a text-only variant, no tower and no projector)");
            Const("int", "ImageTokens", "0", "vision (null): no image rows");
        }
    }
}
