using System;
using System.Collections.Generic;

namespace MoeCompiler.Generators.Model
{
    // The closed vocabularies of a spec. The parser turns each spec string into one of these once; everything after it
    // (weight plan, checkpoint names, emitter) switches on the enum, so the compiler checks that every kind is handled.
    // The spec spelling of each value is in SpecNames.

    /// <summary>Spec key llm.family: the base LLM, which fixes checkpoint key names and block layout.</summary>
    internal enum LlmFamily { StableLm, Qwen, Phi, Mistral, Mixtral }

    /// <summary>Spec key llm.ffnKind.</summary>
    internal enum FfnKind { SwiGlu, QwenSwiGlu, GeluTanh }

    /// <summary>Spec key llm.norm.</summary>
    internal enum NormKind { LayerNorm, RmsNorm }

    /// <summary>Spec key moe.routing.</summary>
    internal enum RoutingKind { DeepSpeed, Mixtral }

    /// <summary>Spec key moe.secondExpert.</summary>
    internal enum SecondExpertPolicy { Deterministic, Sampled }

    /// <summary>Spec key moe.placement.kind.</summary>
    internal enum PlacementKind { Interval, All, FirstHalf, SecondHalf, List }

    /// <summary>Spec key vision.tower.</summary>
    internal enum VisionTowerKind { Clip, Siglip }

    /// <summary>Spec key vision.selectFeature.</summary>
    internal enum SelectFeature { Patch, ClsPatch }

    /// <summary>Spec key checkpoint.layout.</summary>
    internal enum CheckpointLayout { MoeLlava, CuMo }

    /// <summary>
    /// A closed set of spec strings and the enum value each stands for. Names are kept in spec order: diagnostics
    /// list them in that order and suggest the nearest one.
    /// </summary>
    internal sealed class SpecVocabulary<T> where T : struct, Enum
    {
        private readonly T[] _values;

        public SpecVocabulary(params (string Name, T Value)[] entries)
        {
            Names = new string[entries.Length];
            _values = new T[entries.Length];
            for (int i = 0; i < entries.Length; i++)
            {
                Names[i] = entries[i].Name;
                _values[i] = entries[i].Value;
            }
        }

        /// <summary>The allowed spec strings, in the order diagnostics list them.</summary>
        public string[] Names { get; }

        public IReadOnlyList<T> Values => _values;

        public bool TryParse(string name, out T value)
        {
            int index = Array.IndexOf(Names, name);
            value = index >= 0 ? _values[index] : default;
            return index >= 0;
        }

        /// <summary>The spec spelling of a value (the generated constants keep the spec's strings).</summary>
        public string NameOf(T value)
        {
            for (int i = 0; i < _values.Length; i++)
            {
                if (EqualityComparer<T>.Default.Equals(_values[i], value)) return Names[i];
            }

            throw new ArgumentOutOfRangeException(nameof(value), value, "no spec name for this " + typeof(T).Name);
        }
    }

    /// <summary>The spec spelling of every kind, and <c>SpecName()</c> to turn a value back into it.</summary>
    internal static class SpecNames
    {
        // Families, FFN kinds, norms and towers are spelled in their profiles (Profiles.cs), the one place a new one is added.
        public static readonly SpecVocabulary<LlmFamily> Families = new SpecVocabulary<LlmFamily>(
            Array.ConvertAll(Profiles.Families, p => (p.SpecName, p.Family)));

        public static readonly SpecVocabulary<FfnKind> FfnKinds = new SpecVocabulary<FfnKind>(
            Array.ConvertAll(Profiles.FfnKinds, p => (p.SpecName, p.Kind)));

        public static readonly SpecVocabulary<NormKind> Norms = new SpecVocabulary<NormKind>(
            Array.ConvertAll(Profiles.Norms, p => (p.SpecName, p.Kind)));

        public static readonly SpecVocabulary<RoutingKind> Routings = new SpecVocabulary<RoutingKind>(
            ("deepspeed", RoutingKind.DeepSpeed), ("mixtral", RoutingKind.Mixtral));

        public static readonly SpecVocabulary<SecondExpertPolicy> SecondExpertPolicies = new SpecVocabulary<SecondExpertPolicy>(
            ("deterministic", SecondExpertPolicy.Deterministic), ("sampled", SecondExpertPolicy.Sampled));

        public static readonly SpecVocabulary<PlacementKind> PlacementKinds = new SpecVocabulary<PlacementKind>(
            ("interval", PlacementKind.Interval), ("all", PlacementKind.All), ("first-half", PlacementKind.FirstHalf),
            ("second-half", PlacementKind.SecondHalf), ("list", PlacementKind.List));

        public static readonly SpecVocabulary<VisionTowerKind> Towers = new SpecVocabulary<VisionTowerKind>(
            Array.ConvertAll(Profiles.Towers, p => (p.SpecName, p.Kind)));

        public static readonly SpecVocabulary<SelectFeature> SelectFeatures = new SpecVocabulary<SelectFeature>(
            ("patch", SelectFeature.Patch), ("cls_patch", SelectFeature.ClsPatch));

        public static readonly SpecVocabulary<CheckpointLayout> Layouts = new SpecVocabulary<CheckpointLayout>(
            ("moe-llava", CheckpointLayout.MoeLlava), ("cumo", CheckpointLayout.CuMo));

        public static string SpecName(this LlmFamily value) => Families.NameOf(value);
        public static string SpecName(this FfnKind value) => FfnKinds.NameOf(value);
        public static string SpecName(this NormKind value) => Norms.NameOf(value);
        public static string SpecName(this RoutingKind value) => Routings.NameOf(value);
        public static string SpecName(this SecondExpertPolicy value) => SecondExpertPolicies.NameOf(value);
        public static string SpecName(this PlacementKind value) => PlacementKinds.NameOf(value);
        public static string SpecName(this VisionTowerKind value) => Towers.NameOf(value);
        public static string SpecName(this SelectFeature value) => SelectFeatures.NameOf(value);
        public static string SpecName(this CheckpointLayout value) => Layouts.NameOf(value);
    }
}
