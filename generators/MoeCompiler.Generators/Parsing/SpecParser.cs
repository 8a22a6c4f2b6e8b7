using System;
using System.Collections.Generic;
using System.Globalization;
using Microsoft.CodeAnalysis.CSharp;
using MoeCompiler.Generators.Json;
using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Parsing
{
    /// <summary>
    /// Turns the text of one spec file into a validated <see cref="VariantModel"/> or diagnostics. It reads the
    /// whole file and reports every problem it can find in one pass; it never throws on bad input.
    /// </summary>
    internal static class SpecParser
    {
        public static readonly string[] ProjectorKinds = { "mlp2x_gelu" };
        public static readonly string[] TokenizerKinds = { "arcade100k", "qwen", "gpt2", "phi2", "sentencepiece", "openchat" };
        public static readonly string[] Templates = { "phi", "stablelm", "qwen", "openchat", "plain", "mistral_instruct_system", "mistral_instruct" };

        /// <summary>Limits that keep generated code a sane size (one member per layer, one loop per expert).</summary>
        private const int MaxLayers = 512;
        private const int MaxExperts = 256;

        /// <summary>Names the generator itself emits into the namespace; a variant may not take them.</summary>
        /// <summary>
        /// Names the generator emits itself: the catalog types, and the members and nested types of a model class
        /// (a class may not have a member named like itself).
        /// </summary>
        private static readonly string[] ReservedNames =
        {
            "ModelCatalog", "ModelCatalogEntry", "MoeBlock", "DenseBlock", "VisionTower", "Manifest", "ModelDescription", "Description",
            "Embedding", "FinalNorm", "LmHead", "Vision", "Projector", "Load", "CreateCache", "Dispose", "Forward", "EncodeImage",
            "EmbedTokens", "Weight", "Dense", "LayerNormAt", "RmsNormAt", "FeedForwardAt", "MixtralExpertAt", "CreateManifest", "Geometry",
            "LlmMoeOptions", "VisionMoeOptions", "ProjectorMoeOptions", "S2Scales",
        };

        public static SpecResult Parse(string filePath, string text)
        {
            var diagnostics = new DiagnosticBag(filePath);
            string fileName = FileNameOf(filePath);
            JsonNode? root = JsonReader.Parse(text, out JsonSyntaxError? error);
            if (error is not null || root is null)
            {
                diagnostics.Report(DiagnosticDescriptors.MalformedJson, error!.Position, fileName, error.Message);
                return Result(filePath, null, null, diagnostics, default);
            }

            if (root is not JsonObject rootObject)
            {
                diagnostics.Report(DiagnosticDescriptors.WrongType, root.Position, "$", "an object", root.TypeName);
                return Result(filePath, null, null, diagnostics, default);
            }

            var spec = new ObjectReader(rootObject, "", diagnostics,
                "$schema", "name", "displayName", "description", "llm", "moe", "vision", "projector", "tokenizer", "prompt", "checkpoint");
            spec.String("$schema", required: false);
            string? name = spec.String("name", required: true);
            JsonPosition namePosition = spec.PositionOf("name");
            if (name is not null && !IsValidIdentifier(name))
            {
                diagnostics.Report(DiagnosticDescriptors.InvalidIdentifier, namePosition, name);
                name = null;
            }

            string? displayName = spec.String("displayName", required: false, fallback: name);
            string? description = spec.String("description", required: false, fallback: "");

            LlmModel? llm = ParseLlm(spec, diagnostics);
            MoeModel? moe = null;
            bool moeOk = true;
            JsonObject? moeJson = spec.Object("moe", required: false, allowNull: true, out bool moeIsNull);
            if (moeJson is not null) moe = ParseMoe(new ObjectReader(moeJson, "moe", diagnostics,
                "experts", "topK", "placement", "routing", "capacityFactor", "evalCapacityFactor", "minCapacity", "secondExpert", "residual"),
                llm, diagnostics, out moeOk);
            else if (spec.Has("moe") && !moeIsNull) moeOk = false;

            CheckpointLayout? layout = CheckpointLayout.MoeLlava;
            JsonObject? checkpointJson = spec.Object("checkpoint", required: false, allowNull: false, out _);
            if (checkpointJson is not null)
            {
                layout = new ObjectReader(checkpointJson, "checkpoint", diagnostics, "layout").Choice("layout", "checkpoint layout", SpecNames.Layouts, required: true);
            }
            else if (spec.Has("checkpoint"))
            {
                layout = null;
            }

            VisionModel? vision = ParseVision(spec, layout, diagnostics, out bool textOnly);
            ProjectorModel? projector = ParseProjector(spec, layout, textOnly, diagnostics, out bool noProjector);
            TokenizerModel? tokenizer = ParseTokenizer(spec, llm, diagnostics);

            string? template = null;
            JsonObject? promptJson = spec.Object("prompt", required: true, allowNull: false, out _);
            if (promptJson is not null)
            {
                template = new ObjectReader(promptJson, "prompt", diagnostics, "template").Choice("template", "prompt template", Templates, required: true);
            }


            if (llm is not null && moe is not null) CheckLlmMoeCombination(spec, moeJson!, llm, moe, diagnostics);

            if (diagnostics.HasErrors || name is null || displayName is null || description is null || llm is null || !moeOk ||
                (vision is null && !textOnly) || (projector is null && !noProjector) || tokenizer is null || template is null || layout is null)
            {
                return Result(filePath, name, null, diagnostics, namePosition);
            }

            var variant = new VariantModel(fileName, name, displayName, description, llm, moe, vision, projector, tokenizer, template, layout.Value);
            return Result(filePath, name, variant, diagnostics, namePosition);
        }

        private static LlmModel? ParseLlm(ObjectReader spec, DiagnosticBag diagnostics)
        {
            JsonObject? json = spec.Object("llm", required: true, allowNull: false, out _);
            if (json is null) return null;
            var llm = new ObjectReader(json, "llm", diagnostics,
                "family", "vocabSize", "tokenizerSize", "hiddenSize", "layers", "heads", "kvHeads", "headDim", "ffnSize", "ffnKind",
                "norm", "normEps", "ropeTheta", "rotaryFraction", "qkvBias", "attnOutBias", "mlpBias", "lmHeadBias",
                "parallelResidual", "maxPositions");
            int errorsBefore = diagnostics.Items.Count;
            LlmFamily? family = llm.Choice("family", "LLM family", SpecNames.Families, required: true);
            int? vocab = llm.Int("vocabSize", required: true, min: 1);
            int? tokenizerSize = llm.Int("tokenizerSize", required: false, fallback: vocab, min: 1);
            int? hidden = llm.Int("hiddenSize", required: true, min: 1);
            int? layers = llm.Int("layers", required: true, min: 1, max: MaxLayers);
            int? heads = llm.Int("heads", required: true, min: 1);
            int? kvHeads = llm.Int("kvHeads", required: false, fallback: heads, min: 1);
            int? headDim = llm.Int("headDim", required: false, min: 1);
            int? ffn = llm.Int("ffnSize", required: true, min: 1);
            FfnKind? ffnKind = llm.Choice("ffnKind", "FFN kind", SpecNames.FfnKinds, required: true);
            NormKind? norm = llm.Choice("norm", "norm kind", SpecNames.Norms, required: true);
            double? normEps = llm.Number("normEps", required: true, positive: true);
            double? ropeTheta = llm.Number("ropeTheta", required: false, fallback: 10000, positive: true);
            double? rotaryFraction = llm.Number("rotaryFraction", required: false, fallback: 1.0, positive: true);
            bool? qkvBias = llm.Bool("qkvBias", required: false, fallback: false);
            bool? attnOutBias = llm.Bool("attnOutBias", required: false, fallback: false);
            bool? mlpBias = llm.Bool("mlpBias", required: false, fallback: false);
            bool? lmHeadBias = llm.Bool("lmHeadBias", required: false, fallback: false);
            bool? parallel = llm.Bool("parallelResidual", required: false, fallback: false);
            int? maxPositions = llm.Int("maxPositions", required: false, fallback: 4096, min: 1);

            if (tokenizerSize is int ts && vocab is int v && ts > v)
            {
                diagnostics.Report(DiagnosticDescriptors.ValueOutOfRange, llm.PositionOf("tokenizerSize"), "llm.tokenizerSize",
                    Str(ts), "it must not exceed 'llm.vocabSize' (" + Str(v) + ")");
            }

            if (hidden is int h && heads is int nh && h % nh != 0)
            {
                diagnostics.Report(DiagnosticDescriptors.WidthNotDivisibleByHeads, llm.PositionOf("hiddenSize"), "llm.hiddenSize", Str(h), Str(nh));
            }

            if (heads is int nh2 && kvHeads is int kv && nh2 % kv != 0)
            {
                diagnostics.Report(DiagnosticDescriptors.HeadsNotDivisibleByKvHeads, llm.PositionOf("kvHeads"), Str(nh2), Str(kv));
            }

            if (headDim is null && !llm.Has("headDim") && hidden is int h2 && heads is int nh3 && h2 % nh3 == 0) headDim = h2 / nh3;

            int rotaryDims = 0;
            if (headDim is int hd && rotaryFraction is double rf)
            {
                double exact = hd * rf;
                double rounded = Math.Round(exact);
                if (rf > 1 || Math.Abs(exact - rounded) > 1e-9 || rounded <= 0 || ((long)rounded) % 2 != 0)
                {
                    diagnostics.Report(DiagnosticDescriptors.BadRotaryDims, llm.PositionOf("rotaryFraction"),
                        rf.ToString("R", CultureInfo.InvariantCulture), Str(hd), exact.ToString("R", CultureInfo.InvariantCulture));
                }
                else
                {
                    rotaryDims = (int)rounded;
                }
            }

            FamilyProfile? profile = family is LlmFamily known ? Profiles.Of(known) : null;
            if (profile is not null && ffnKind is FfnKind actualFfn && actualFfn != profile.Ffn)
            {
                diagnostics.Report(DiagnosticDescriptors.UnsupportedCombination, llm.PositionOf("ffnKind"),
                    "LLM family '" + profile.SpecName + "' has a '" + profile.Ffn.SpecName() + "' FFN (its checkpoint names follow it), not '" + actualFfn.SpecName() + "'");
            }

            if (profile is { FusedQkv: true } && heads is int qh && kvHeads is int qkv && qh != qkv)
            {
                string fusedName = profile.FusedQkvName.Substring(profile.FusedQkvName.LastIndexOf('.') + 1);
                diagnostics.Report(DiagnosticDescriptors.UnsupportedCombination, llm.PositionOf("kvHeads"),
                    profile.DisplayName + "'s fused " + fusedName + " projection needs 'llm.kvHeads' equal to 'llm.heads'");
            }

            if (profile is { ParallelResidual: true } && parallel == false)
            {
                diagnostics.Report(DiagnosticDescriptors.UnsupportedCombination, llm.PositionOf("parallelResidual"),
                    profile.DisplayName + " blocks have one shared norm and a parallel residual; 'llm.parallelResidual' must be true");
            }

            if (diagnostics.Items.Count != errorsBefore || family is null || vocab is null || tokenizerSize is null || hidden is null ||
                layers is null || heads is null || kvHeads is null || headDim is null || ffn is null || ffnKind is null || norm is null ||
                normEps is null || ropeTheta is null || rotaryFraction is null || qkvBias is null || attnOutBias is null ||
                mlpBias is null || lmHeadBias is null || parallel is null || maxPositions is null)
            {
                return null;
            }

            return new LlmModel(family.Value, vocab.Value, tokenizerSize.Value, hidden.Value, layers.Value, heads.Value, kvHeads.Value,
                headDim.Value, ffn.Value, ffnKind.Value, norm.Value, normEps.Value, ropeTheta.Value, rotaryFraction.Value, rotaryDims,
                qkvBias.Value, attnOutBias.Value, mlpBias.Value, lmHeadBias.Value, parallel.Value, maxPositions.Value);
        }

        private static MoeModel? ParseMoe(ObjectReader moe, LlmModel? llm, DiagnosticBag diagnostics, out bool ok)
        {
            int errorsBefore = diagnostics.Items.Count;
            int? experts = moe.Int("experts", required: true, min: 1, max: MaxExperts);
            int? topK = moe.Int("topK", required: true);
            RoutingKind defaultRouting = llm is null ? RoutingKind.DeepSpeed : Profiles.Of(llm.Family).DefaultRouting;
            RoutingKind? routing = moe.Choice("routing", "routing", SpecNames.Routings, required: false, fallback: defaultRouting);
            double? capacity = moe.Number("capacityFactor", required: false, fallback: 1.5, positive: true);
            double? evalCapacity = moe.Number("evalCapacityFactor", required: false, fallback: 2.0, positive: true);
            int? minCapacity = moe.Int("minCapacity", required: false, fallback: 0, min: 0);
            SecondExpertPolicy? secondExpert = moe.Choice("secondExpert", "second-expert policy", SpecNames.SecondExpertPolicies, required: false, fallback: SecondExpertPolicy.Deterministic);
            bool? residual = moe.Bool("residual", required: false, fallback: false);
            CheckTopK(moe, "topK", experts, topK, diagnostics);

            PlacementKind? placementKind = null;
            string placementText = "";
            List<int>? layers = null;
            JsonObject? placementJson = moe.Object("placement", required: true, allowNull: false, out _);
            if (placementJson is not null)
            {
                layers = ParsePlacement(placementJson, llm, diagnostics, out placementKind, out placementText);
            }

            ok = diagnostics.Items.Count == errorsBefore;
            if (!ok || experts is null || topK is null || routing is null || capacity is null || evalCapacity is null ||
                minCapacity is null || secondExpert is null || residual is null || placementKind is null || layers is null)
            {
                ok = false;
                return null;
            }

            return new MoeModel(experts.Value, topK.Value, placementKind.Value, placementText, new EquatableArray<int>(layers.ToArray()), routing.Value,
                capacity.Value, evalCapacity.Value, minCapacity.Value, secondExpert.Value, residual.Value);
        }

        private static List<int>? ParsePlacement(JsonObject json, LlmModel? llm, DiagnosticBag diagnostics, out PlacementKind? kind, out string text)
        {
            text = "";
            // The keys allowed depend on the kind, so read the kind first with a permissive reader.
            var probe = new ObjectReader(json, "moe.placement", new DiagnosticBag(diagnostics.FilePath), "kind", "start", "step", "layers");
            kind = probe.Choice("kind", "MoE placement", SpecNames.PlacementKinds, required: false);
            string[] keys = kind switch
            {
                PlacementKind.Interval => new[] { "kind", "start", "step" },
                PlacementKind.List => new[] { "kind", "layers" },
                _ => new[] { "kind" },
            };
            var placement = new ObjectReader(json, "moe.placement", diagnostics, keys);
            kind = placement.Choice("kind", "MoE placement", SpecNames.PlacementKinds, required: true);
            if (kind is not PlacementKind placementKind) return null;
            int errorsBefore = diagnostics.Items.Count;
            var result = new List<int>();
            switch (placementKind)
            {
                case PlacementKind.Interval:
                    {
                        int? start = placement.Int("start", required: false, fallback: 0, min: 0);
                        int? step = placement.Int("step", required: false, fallback: 2, min: 1);
                        if (start is null || step is null) return null;
                        text = "interval(start " + Str(start.Value) + ", step " + Str(step.Value) + ")";
                        if (llm is null) return null;
                        if (start.Value >= llm.Layers)
                        {
                            diagnostics.Report(DiagnosticDescriptors.MoeLayerOutOfRange, placement.PositionOf("start"), Str(start.Value), Str(llm.Layers - 1));
                            return null;
                        }

                        for (int i = start.Value; i < llm.Layers; i += step.Value) result.Add(i);
                        break;
                    }

                case PlacementKind.List:
                    {
                        var items = placement.IntArray("layers", required: true);
                        if (items is null) return null;
                        text = "list";
                        if (items.Count == 0)
                        {
                            diagnostics.Report(DiagnosticDescriptors.EmptyPlacement, placement.PositionOf("layers"), "list", llm is null ? "?" : Str(llm.Layers));
                            return null;
                        }

                        if (llm is null) return null;
                        foreach (var (value, position) in items)
                        {
                            if (value < 0 || value >= llm.Layers)
                            {
                                diagnostics.Report(DiagnosticDescriptors.MoeLayerOutOfRange, position, Str(value), Str(llm.Layers - 1));
                            }
                            else if (result.Contains(value))
                            {
                                diagnostics.Report(DiagnosticDescriptors.DuplicateMoeLayer, position, Str(value));
                            }
                            else
                            {
                                result.Add(value);
                            }
                        }

                        result.Sort();
                        break;
                    }

                case PlacementKind.All:
                case PlacementKind.FirstHalf:
                case PlacementKind.SecondHalf:
                    {
                        text = placementKind.SpecName();
                        if (llm is null) return null;
                        int from = placementKind == PlacementKind.SecondHalf ? llm.Layers / 2 : 0;
                        int to = placementKind == PlacementKind.FirstHalf ? llm.Layers / 2 : llm.Layers;
                        for (int i = from; i < to; i++) result.Add(i);
                        break;
                    }
            }

            if (result.Count == 0 && diagnostics.Items.Count == errorsBefore)
            {
                diagnostics.Report(DiagnosticDescriptors.EmptyPlacement, placement.Json.OpeningBrace, text, Str(llm!.Layers));
            }

            return diagnostics.Items.Count == errorsBefore ? result : null;
        }

        private static void CheckLlmMoeCombination(ObjectReader spec, JsonObject moeJson, LlmModel llm, MoeModel moe, DiagnosticBag diagnostics)
        {
            var moeReader = new ObjectReader(moeJson, "moe", new DiagnosticBag(diagnostics.FilePath),
                "experts", "topK", "placement", "routing", "capacityFactor", "evalCapacityFactor", "minCapacity", "secondExpert", "residual");
            if (moe.Routing == RoutingKind.DeepSpeed && moe.TopK > 2)
            {
                diagnostics.Report(DiagnosticDescriptors.UnsupportedCombination, moeReader.PositionOf("topK"),
                    "DeepSpeed routing ('moe.routing' \"deepspeed\") supports top-1 and top-2 only; use \"mixtral\" routing for top-" + Str(moe.TopK));
            }

            FamilyProfile profile = Profiles.Of(llm.Family);
            if (!profile.ResidualMoe && moe.Residual)
            {
                diagnostics.Report(DiagnosticDescriptors.UnsupportedCombination, moeReader.PositionOf("residual"),
                    profile.DisplayName + " checkpoints (" + profile.MoeModule + ") have no PR-MoE residual MLP; 'moe.residual' must be false for family '" + profile.SpecName + "'");
            }
        }

        /// <summary>The vision tower, or null with <paramref name="textOnly"/> set when the spec has none ("vision" null or absent).</summary>
        private static VisionModel? ParseVision(ObjectReader spec, CheckpointLayout? layout, DiagnosticBag diagnostics, out bool textOnly)
        {
            JsonObject? json = spec.Object("vision", required: false, allowNull: true, out bool isNull);
            textOnly = isNull || !spec.Has("vision");
            if (json is null) return null;
            var vision = new ObjectReader(json, "vision", diagnostics,
                "tower", "imageSize", "patchSize", "hiddenSize", "layers", "heads", "mlpSize", "normEps", "selectLayer", "selectFeature", "moe", "scales");
            int errorsBefore = diagnostics.Items.Count;
            VisionTowerKind? tower = vision.Choice("tower", "vision tower", SpecNames.Towers, required: true);
            int? imageSize = vision.Int("imageSize", required: true, min: 1);
            int? patchSize = vision.Int("patchSize", required: true, min: 1);
            int? hidden = vision.Int("hiddenSize", required: true, min: 1);
            int? layers = vision.Int("layers", required: true, min: 1, max: MaxLayers);
            int? heads = vision.Int("heads", required: true, min: 1);
            int? mlp = vision.Int("mlpSize", required: true, min: 1);
            double? normEps = vision.Number("normEps", required: true, positive: true);
            int? selectLayer = vision.Int("selectLayer", required: false, fallback: -2);
            SelectFeature? selectFeature = vision.Choice("selectFeature", "vision select feature", SpecNames.SelectFeatures, required: false, fallback: SelectFeature.Patch);
            SideMoeModel? moe = ParseSideMoe(vision, "moe", layout, diagnostics);
            var scaleItems = vision.IntArray("scales", required: false);
            int[]? scales = vision.Has("scales") ? null : new[] { 1 };
            if (scaleItems is not null)
            {
                scales = new int[scaleItems.Count];
                for (int i = 0; i < scaleItems.Count; i++) scales[i] = scaleItems[i].Value;
                bool valid = scales.Length > 0 && scales[0] == 1;
                for (int i = 1; i < scales.Length && valid; i++) valid = scales[i] > scales[i - 1];
                if (!valid)
                {
                    diagnostics.Report(DiagnosticDescriptors.ValueOutOfRange, vision.PositionOf("scales"), "vision.scales",
                        "[" + string.Join(", ", Array.ConvertAll(scales, Str)) + "]", "it must start with 1 and increase strictly (S2 scales, e.g. [1, 3])");
                }
            }

            if (scales is not null && scales.Length > 1 && tower is not null && selectFeature is not null && imageSize is int s2 && patchSize is int p2 &&
                (s2 % p2 != 0 || Profiles.Of(tower.Value).ClassToken != (selectFeature == SelectFeature.Patch)))
            {
                diagnostics.Report(DiagnosticDescriptors.UnsupportedCombination, vision.PositionOf("scales"),
                    "S2 scales need the tower's features to be the full patch grid: 'vision.imageSize' a multiple of 'vision.patchSize' and " +
                    "'vision.selectFeature' \"patch\" for CLIP (\"cls_patch\" for SigLIP)");
            }

            if (imageSize is int s && patchSize is int p && s < p)
            {
                diagnostics.Report(DiagnosticDescriptors.ImageSmallerThanPatch, vision.PositionOf("patchSize"), Str(s), Str(p));
            }

            if (hidden is int h && heads is int nh && h % nh != 0)
            {
                diagnostics.Report(DiagnosticDescriptors.WidthNotDivisibleByHeads, vision.PositionOf("hiddenSize"), "vision.hiddenSize", Str(h), Str(nh));
            }

            if (layers is int l && selectLayer is int sl && (sl == 0 || sl < -l || sl > l))
            {
                diagnostics.Report(DiagnosticDescriptors.SelectLayerOutOfRange, vision.PositionOf("selectLayer"), Str(sl), Str(l), Str(l));
            }

            if (diagnostics.Items.Count != errorsBefore || tower is null || imageSize is null || patchSize is null || hidden is null ||
                layers is null || heads is null || mlp is null || normEps is null || selectLayer is null || selectFeature is null || scales is null)
            {
                return null;
            }

            return new VisionModel(tower.Value, imageSize.Value, patchSize.Value, hidden.Value, layers.Value, heads.Value, mlp.Value, normEps.Value,
                selectLayer.Value, selectFeature.Value, moe, new EquatableArray<int>(scales));
        }

        private static SideMoeModel? ParseSideMoe(ObjectReader parent, string key, CheckpointLayout? layout, DiagnosticBag diagnostics)
        {
            JsonObject? json = parent.Object(key, required: false, allowNull: true, out _);
            if (json is null) return null;
            if (layout == CheckpointLayout.MoeLlava)
            {
                diagnostics.Report(DiagnosticDescriptors.UnsupportedCombination, parent.PositionOf(key),
                    "'" + parent.KeyPath(key) + "' needs the CuMo checkpoint layout (\"checkpoint\": { \"layout\": \"cumo\" }); MoE-LLaVA checkpoints have a dense " +
                    (parent.Path == "vision" ? "tower" : "projector"));
            }

            var moe = new ObjectReader(json, parent.KeyPath(key), diagnostics, "experts", "topK");
            int? experts = moe.Int("experts", required: true, min: 1, max: MaxExperts);
            int? topK = moe.Int("topK", required: true);
            if (!CheckTopK(moe, "topK", experts, topK, diagnostics)) return null;
            return new SideMoeModel(experts!.Value, topK!.Value);
        }

        private static bool CheckTopK(ObjectReader reader, string key, int? experts, int? topK, DiagnosticBag diagnostics)
        {
            if (experts is not int e || topK is not int k) return false;
            if (k >= 1 && k <= e) return true;
            diagnostics.Report(DiagnosticDescriptors.TopKOutOfRange, reader.PositionOf(key), reader.KeyPath(key), Str(k), Str(e));
            return false;
        }

        /// <summary>
        /// The projector, which exists exactly when the tower does: absent means the default mlp2x_gelu for a vision
        /// variant and no projector for a text-only one; null is allowed only without a tower (MOE022 otherwise).
        /// </summary>
        private static ProjectorModel? ParseProjector(ObjectReader spec, CheckpointLayout? layout, bool textOnly, DiagnosticBag diagnostics, out bool noProjector)
        {
            JsonObject? json = spec.Object("projector", required: false, allowNull: true, out bool isNull);
            noProjector = textOnly;
            if (textOnly && json is not null)
            {
                diagnostics.Report(DiagnosticDescriptors.VisionProjectorMismatch, spec.PositionOf("projector"),
                    "'projector' is given but the spec has no vision tower ('vision' is " + (spec.Has("vision") ? "null" : "absent") +
                    "): a text-only variant has no projector; remove 'projector' or add a 'vision' tower");
                return null;
            }

            if (!textOnly && isNull)
            {
                diagnostics.Report(DiagnosticDescriptors.VisionProjectorMismatch, spec.PositionOf("projector"),
                    "'projector' is null but the spec has a vision tower: its image features need a projector; omit 'projector' for the default " +
                    "{ \"kind\": \"mlp2x_gelu\" }, or write \"vision\": null as well for a text-only variant");
                return null;
            }

            if (json is null) return spec.Has("projector") || textOnly ? null : new ProjectorModel("mlp2x_gelu", null);
            var projector = new ObjectReader(json, "projector", diagnostics, "kind", "moe");
            int errorsBefore = diagnostics.Items.Count;
            string? kind = projector.Choice("kind", "projector kind", ProjectorKinds, required: true);
            SideMoeModel? moe = ParseSideMoe(projector, "moe", layout, diagnostics);
            if (diagnostics.Items.Count != errorsBefore || kind is null) return null;
            return new ProjectorModel(kind, moe);
        }

        private static TokenizerModel? ParseTokenizer(ObjectReader spec, LlmModel? llm, DiagnosticBag diagnostics)
        {
            JsonObject? json = spec.Object("tokenizer", required: true, allowNull: false, out _);
            if (json is null) return null;
            var tokenizer = new ObjectReader(json, "tokenizer", diagnostics, "kind", "bos", "eos");
            int errorsBefore = diagnostics.Items.Count;
            string? kind = tokenizer.Choice("kind", "tokenizer kind", TokenizerKinds, required: true);
            int? bos = tokenizer.NullableInt("bos", out _, out bool bosValid);
            var eos = tokenizer.IntArray("eos", required: true);
            if (eos is not null && eos.Count == 0)
            {
                diagnostics.Report(DiagnosticDescriptors.ValueOutOfRange, tokenizer.PositionOf("eos"), "tokenizer.eos", "[]", "at least one end-of-sequence id is needed");
            }

            if (bos is int bosId) CheckTokenId(tokenizer.KeyPath("bos"), bosId, tokenizer.PositionOf("bos"), isEos: false, llm, diagnostics);
            if (eos is not null)
            {
                for (int i = 0; i < eos.Count; i++)
                {
                    CheckTokenId(tokenizer.KeyPath("eos") + "[" + Str(i) + "]", eos[i].Value, eos[i].Position, isEos: true, llm, diagnostics);
                }
            }

            if (diagnostics.Items.Count != errorsBefore || kind is null || !bosValid || eos is null) return null;
            var ids = new int[eos.Count];
            for (int i = 0; i < ids.Length; i++) ids[i] = eos[i].Value;
            return new TokenizerModel(kind, bos, new EquatableArray<int>(ids));
        }

        /// <summary>
        /// A BOS or EOS id must be a row of the embedding table (MOE020) and an id the tokenizer has: the model only
        /// ever produces ids below 'llm.tokenizerSize', so an EOS at or above it could never end generation (MOE021).
        /// Without a valid LLM section only the sign can be checked.
        /// </summary>
        private static void CheckTokenId(string path, int id, JsonPosition position, bool isEos, LlmModel? llm, DiagnosticBag diagnostics)
        {
            if (id < 0)
            {
                diagnostics.Report(DiagnosticDescriptors.TokenIdOutsideVocabulary, position, path, Str(id), "token ids are never negative");
            }
            else if (llm is not null && id >= llm.VocabSize)
            {
                diagnostics.Report(DiagnosticDescriptors.TokenIdOutsideVocabulary, position, path, Str(id),
                    "the embedding table has rows 0 to " + Str(llm.VocabSize - 1) + " ('llm.vocabSize' " + Str(llm.VocabSize) + ")");
            }
            else if (llm is not null && id >= llm.TokenizerSize)
            {
                diagnostics.Report(DiagnosticDescriptors.TokenIdBeyondTokenizer, position, path, Str(id), Str(llm.TokenizerSize),
                    isEos ? "the model never produces ids from there on, so generation could never stop at it"
                          : "the tokenizer has no token with that id");
            }
        }

        public static bool IsValidIdentifier(string name) =>
            SyntaxFacts.IsValidIdentifier(name) &&
            SyntaxFacts.GetKeywordKind(name) == SyntaxKind.None &&
            SyntaxFacts.GetContextualKeywordKind(name) == SyntaxKind.None &&
            Array.IndexOf(ReservedNames, name) < 0 &&
            !name.EndsWith("Constants", StringComparison.Ordinal) &&
            !(name.StartsWith("Block", StringComparison.Ordinal) && name.Length > 5 && IsDigits(name.Substring(5)));

        private static bool IsDigits(string text)
        {
            foreach (char c in text)
            {
                if (c < '0' || c > '9') return false;
            }

            return true;
        }

        public static string FileNameOf(string path)
        {
            int slash = Math.Max(path.LastIndexOf('/'), path.LastIndexOf('\\'));
            return slash >= 0 ? path.Substring(slash + 1) : path;
        }

        private static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);

        private static SpecResult Result(string filePath, string? name, VariantModel? variant, DiagnosticBag diagnostics, JsonPosition namePosition) =>
            new SpecResult(filePath, name, variant, new EquatableArray<DiagnosticInfo>(diagnostics.Items), namePosition);
    }
}
