using System.Collections.Generic;
using Microsoft.CodeAnalysis;

namespace MoeCompiler.Generators
{
    /// <summary>
    /// Every diagnostic the model compiler reports, with stable ids. All are errors: a spec with any of them
    /// produces no code for its variant (other specs are unaffected). Keep AnalyzerReleases.Unshipped.md in step.
    /// </summary>
    internal static class DiagnosticDescriptors
    {
        private const string Category = "MoeCompiler.Spec";

        public static readonly DiagnosticDescriptor MalformedJson = Error("MOE001", "Malformed JSON",
            "Spec '{0}' is not valid JSON: {1}");

        public static readonly DiagnosticDescriptor UnknownKey = Error("MOE002", "Unknown key",
            "Unknown key '{0}' in {1}{2}");

        public static readonly DiagnosticDescriptor MissingKey = Error("MOE003", "Missing key",
            "Required key '{0}' is missing from {1}");

        public static readonly DiagnosticDescriptor WrongType = Error("MOE004", "Wrong value type",
            "'{0}' must be {1}, not {2}");

        public static readonly DiagnosticDescriptor DuplicateKey = Error("MOE005", "Duplicate key",
            "Key '{0}' appears more than once in {1}");

        public static readonly DiagnosticDescriptor ValueOutOfRange = Error("MOE006", "Value out of range",
            "'{0}' is {1}; {2}");

        public static readonly DiagnosticDescriptor WidthNotDivisibleByHeads = Error("MOE007", "Width not divisible by heads",
            "'{0}' ({1}) is not divisible by the number of heads ({2})");

        public static readonly DiagnosticDescriptor HeadsNotDivisibleByKvHeads = Error("MOE008", "Heads not divisible by kv heads",
            "'llm.heads' ({0}) is not divisible by 'llm.kvHeads' ({1})");

        public static readonly DiagnosticDescriptor BadRotaryDims = Error("MOE009", "Rotary dimensions must be a positive even integer",
            "'llm.rotaryFraction' {0} of head dim {1} gives {2} rotary dimensions; rotate-half RoPE needs a positive even whole number");

        public static readonly DiagnosticDescriptor TopKOutOfRange = Error("MOE010", "Top-k out of range",
            "'{0}' is {1}; it must be between 1 and the number of experts ({2})");

        public static readonly DiagnosticDescriptor MoeLayerOutOfRange = Error("MOE011", "MoE layer index out of range",
            "MoE layer {0} is outside the model's layers 0..{1}");

        public static readonly DiagnosticDescriptor DuplicateMoeLayer = Error("MOE012", "Duplicate MoE layer",
            "MoE layer {0} is listed more than once");

        public static readonly DiagnosticDescriptor EmptyPlacement = Error("MOE013", "Empty MoE placement",
            "MoE placement '{0}' selects no layer of a {1}-layer model; use \"moe\": null for a dense model");

        public static readonly DiagnosticDescriptor DuplicateVariantName = Error("MOE014", "Duplicate variant name",
            "Variant name '{0}' is also used by '{1}'; variant names must be unique (ignoring case: generated file names are case-insensitive)");

        public static readonly DiagnosticDescriptor InvalidIdentifier = Error("MOE015", "Variant name is not a C# identifier",
            "Variant name '{0}' is not a valid C# identifier (letters, digits and '_', not starting with a digit, not a keyword) or is a name the generated code uses itself");

        public static readonly DiagnosticDescriptor UnknownValue = Error("MOE016", "Unknown value",
            "Unknown {0} '{1}'; expected one of {2}{3}");

        public static readonly DiagnosticDescriptor UnsupportedCombination = Error("MOE017", "Unsupported combination",
            "{0}");

        public static readonly DiagnosticDescriptor ImageSmallerThanPatch = Error("MOE018", "Image smaller than a patch",
            "'vision.imageSize' ({0}) is smaller than 'vision.patchSize' ({1}); the tower would see no patch");

        public static readonly DiagnosticDescriptor SelectLayerOutOfRange = Error("MOE019", "Vision select layer out of range",
            "'vision.selectLayer' {0} does not name a hidden state of a {1}-layer tower (use -{2}..-1 or 1..{1})");

        public static readonly DiagnosticDescriptor TokenIdOutsideVocabulary = Error("MOE020", "Token id outside the vocabulary",
            "'{0}' is {1}, outside the vocabulary: {2}");

        public static readonly DiagnosticDescriptor TokenIdBeyondTokenizer = Error("MOE021", "Token id beyond the tokenizer",
            "'{0}' is {1}, not below 'llm.tokenizerSize' ({2}): {3}");

        public static readonly DiagnosticDescriptor VisionProjectorMismatch = Error("MOE022", "Vision tower and projector do not match",
            "{0}");

        public static readonly DiagnosticDescriptor InvalidNamespace = Error("MOE023", "Invalid generated namespace",
            "The MSBuild property MoeCompilerNamespace is '{0}', which is not a C# namespace name; the variants are generated into '{1}'");

        private static readonly Dictionary<string, DiagnosticDescriptor> s_byId = Index(
            MalformedJson, UnknownKey, MissingKey, WrongType, DuplicateKey, ValueOutOfRange, WidthNotDivisibleByHeads,
            HeadsNotDivisibleByKvHeads, BadRotaryDims, TopKOutOfRange, MoeLayerOutOfRange, DuplicateMoeLayer,
            EmptyPlacement, DuplicateVariantName, InvalidIdentifier, UnknownValue, UnsupportedCombination,
            ImageSmallerThanPatch, SelectLayerOutOfRange, TokenIdOutsideVocabulary, TokenIdBeyondTokenizer, VisionProjectorMismatch,
            InvalidNamespace);

        public static DiagnosticDescriptor ById(string id) => s_byId[id];

        private static DiagnosticDescriptor Error(string id, string title, string message) =>
            new DiagnosticDescriptor(id, title, message, Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

        private static Dictionary<string, DiagnosticDescriptor> Index(params DiagnosticDescriptor[] descriptors)
        {
            var map = new Dictionary<string, DiagnosticDescriptor>();
            foreach (var d in descriptors) map.Add(d.Id, d);
            return map;
        }
    }
}
