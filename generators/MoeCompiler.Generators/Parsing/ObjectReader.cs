using System;
using System.Collections.Generic;
using System.Globalization;
using Microsoft.CodeAnalysis;
using MoeCompiler.Generators.Json;
using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Parsing
{
    /// <summary>Collects diagnostics for one spec file.</summary>
    internal sealed class DiagnosticBag
    {
        private readonly List<DiagnosticInfo> _items = new List<DiagnosticInfo>();

        public DiagnosticBag(string filePath) => FilePath = filePath;

        public string FilePath { get; }
        public bool HasErrors => _items.Count > 0;
        public IReadOnlyList<DiagnosticInfo> Items => _items;

        public void Report(DiagnosticDescriptor descriptor, JsonPosition position, params string[] arguments) =>
            _items.Add(DiagnosticInfo.Create(descriptor, FilePath, position, arguments));
    }

    /// <summary>
    /// Typed access to one JSON object of the spec. Reports unknown keys (with the nearest known key), duplicate
    /// keys, missing required keys and wrong types at the offending value; getters return null when the value is
    /// unusable so the caller can keep going and report everything in one pass.
    /// </summary>
    internal sealed class ObjectReader
    {
        private readonly Dictionary<string, JsonProperty> _properties = new Dictionary<string, JsonProperty>(StringComparer.Ordinal);
        private readonly DiagnosticBag _diagnostics;

        public ObjectReader(JsonObject json, string path, DiagnosticBag diagnostics, params string[] knownKeys)
        {
            Json = json;
            Path = path;
            _diagnostics = diagnostics;
            foreach (JsonProperty property in json.Properties)
            {
                if (Array.IndexOf(knownKeys, property.Name) < 0)
                {
                    string? nearest = Suggest(property.Name, knownKeys);
                    diagnostics.Report(DiagnosticDescriptors.UnknownKey, property.NamePosition, property.Name, Describe(path),
                        nearest is null ? "" : "; did you mean '" + nearest + "'?");
                    continue;
                }

                if (_properties.ContainsKey(property.Name))
                {
                    diagnostics.Report(DiagnosticDescriptors.DuplicateKey, property.NamePosition, property.Name, Describe(path));
                    continue;
                }

                _properties.Add(property.Name, property);
            }
        }

        public JsonObject Json { get; }
        public string Path { get; }

        public bool Has(string key) => _properties.ContainsKey(key);

        public JsonPosition PositionOf(string key) =>
            _properties.TryGetValue(key, out var p) ? p.Value.Position : Json.OpeningBrace;

        public JsonPosition NamePositionOf(string key) =>
            _properties.TryGetValue(key, out var p) ? p.NamePosition : Json.OpeningBrace;

        public string KeyPath(string key) => Path.Length == 0 ? key : Path + "." + key;

        /// <summary>The raw value, or null (reporting MOE003 when required) when absent.</summary>
        public JsonNode? Node(string key, bool required)
        {
            if (_properties.TryGetValue(key, out var property)) return property.Value;
            if (required) _diagnostics.Report(DiagnosticDescriptors.MissingKey, Json.OpeningBrace, key, Describe(Path));
            return null;
        }

        public string? String(string key, bool required, string? fallback = null)
        {
            JsonNode? node = Node(key, required);
            if (node is null) return fallback;
            if (node is JsonString s) return s.Value;
            WrongType(key, node, "a string");
            return null;
        }

        /// <summary>A string restricted to <paramref name="allowed"/>; unknown values get MOE016 with a suggestion.</summary>
        public string? Choice(string key, string what, string[] allowed, bool required, string? fallback = null)
        {
            JsonNode? node = Node(key, required);
            if (node is null) return fallback;
            if (node is not JsonString s)
            {
                WrongType(key, node, "a string");
                return null;
            }

            if (Array.IndexOf(allowed, s.Value) >= 0) return s.Value;
            string? nearest = Suggest(s.Value, allowed);
            _diagnostics.Report(DiagnosticDescriptors.UnknownValue, s.Position, what, s.Value, Quote(allowed),
                nearest is null ? "" : "; did you mean '" + nearest + "'?");
            return null;
        }

        /// <summary>A string of <paramref name="vocabulary"/>, parsed once into its enum value (MOE016 for an unknown string).</summary>
        public T? Choice<T>(string key, string what, SpecVocabulary<T> vocabulary, bool required, T? fallback = null) where T : struct, Enum
        {
            if (!Has(key) && !required) return fallback;
            string? name = Choice(key, what, vocabulary.Names, required);
            return name is not null && vocabulary.TryParse(name, out T value) ? value : (T?)null;
        }

        public int? Int(string key, bool required, int? fallback = null, int? min = null, string? minReason = null, int? max = null)
        {
            JsonNode? node = Node(key, required);
            if (node is null) return fallback;
            int? value = AsInt(node, KeyPath(key));
            if (value is int v && min is int m && v < m)
            {
                _diagnostics.Report(DiagnosticDescriptors.ValueOutOfRange, node.Position, KeyPath(key), v.ToString(CultureInfo.InvariantCulture),
                    minReason ?? "it must be at least " + m.ToString(CultureInfo.InvariantCulture));
                return null;
            }

            if (value is int big && max is int limit && big > limit)
            {
                _diagnostics.Report(DiagnosticDescriptors.ValueOutOfRange, node.Position, KeyPath(key), big.ToString(CultureInfo.InvariantCulture),
                    "it must be at most " + limit.ToString(CultureInfo.InvariantCulture) + " (the generated code has one member per layer)");
                return null;
            }

            return value;
        }

        /// <summary>An integer or an explicit null (both valid); Missing means absent.</summary>
        public int? NullableInt(string key, out bool present, out bool valid)
        {
            JsonNode? node = Node(key, required: false);
            present = node is not null;
            valid = true;
            if (node is null || node is JsonNull) return null;
            int? value = AsInt(node, KeyPath(key), "an integer or null");
            valid = value is not null;
            return value;
        }

        public double? Number(string key, bool required, double? fallback = null, bool positive = false)
        {
            JsonNode? node = Node(key, required);
            if (node is null) return fallback;
            if (node is not JsonNumber n)
            {
                WrongType(key, node, "a number");
                return null;
            }

            if (positive && !(n.Value > 0))
            {
                _diagnostics.Report(DiagnosticDescriptors.ValueOutOfRange, node.Position, KeyPath(key), n.Text, "it must be greater than 0");
                return null;
            }

            return n.Value;
        }

        public bool? Bool(string key, bool required, bool? fallback = null)
        {
            JsonNode? node = Node(key, required);
            if (node is null) return fallback;
            if (node is JsonBoolean b) return b.Value;
            WrongType(key, node, "true or false");
            return null;
        }

        /// <summary>An object value. <paramref name="isNull"/> is true for an explicit null when allowed.</summary>
        public JsonObject? Object(string key, bool required, bool allowNull, out bool isNull)
        {
            isNull = false;
            JsonNode? node = Node(key, required);
            if (node is null) return null;
            if (node is JsonObject o) return o;
            if (allowNull && node is JsonNull)
            {
                isNull = true;
                return null;
            }

            WrongType(key, node, allowNull ? "an object or null" : "an object");
            return null;
        }

        public List<(int Value, JsonPosition Position)>? IntArray(string key, bool required)
        {
            JsonNode? node = Node(key, required);
            if (node is null) return null;
            if (node is not JsonArray array)
            {
                WrongType(key, node, "an array of integers");
                return null;
            }

            var result = new List<(int, JsonPosition)>();
            bool ok = true;
            for (int i = 0; i < array.Items.Count; i++)
            {
                int? value = AsInt(array.Items[i], KeyPath(key) + "[" + i.ToString(CultureInfo.InvariantCulture) + "]");
                if (value is int v) result.Add((v, array.Items[i].Position));
                else ok = false;
            }

            return ok ? result : null;
        }

        private int? AsInt(JsonNode node, string path, string expected = "an integer")
        {
            if (node is JsonNumber n && n.IsInteger && int.TryParse(n.Text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value))
            {
                return value;
            }

            if (node is JsonNumber big && big.IsInteger)
            {
                _diagnostics.Report(DiagnosticDescriptors.ValueOutOfRange, node.Position, path, big.Text, "it must fit in a 32-bit integer");
                return null;
            }

            _diagnostics.Report(DiagnosticDescriptors.WrongType, node.Position, path, expected, node is JsonNumber ? "a fractional number" : node.TypeName);
            return null;
        }

        private void WrongType(string key, JsonNode node, string expected) =>
            _diagnostics.Report(DiagnosticDescriptors.WrongType, node.Position, KeyPath(key), expected, node.TypeName);

        public static string Describe(string path) => path.Length == 0 ? "the spec" : "'" + path + "'";

        public static string Quote(string[] values)
        {
            var quoted = new string[values.Length];
            for (int i = 0; i < values.Length; i++) quoted[i] = "'" + values[i] + "'";
            return string.Join(", ", quoted);
        }

        /// <summary>The known word closest in edit distance (ignoring case), if it is close enough to be a typo.</summary>
        public static string? Suggest(string word, string[] known)
        {
            string? best = null;
            int bestDistance = int.MaxValue;
            foreach (string candidate in known)
            {
                int distance = EditDistance(word.ToLowerInvariant(), candidate.ToLowerInvariant());
                if (distance < bestDistance || (distance == bestDistance && best is not null && string.CompareOrdinal(candidate, best) < 0))
                {
                    best = candidate;
                    bestDistance = distance;
                }
            }

            int limit = Math.Max(2, word.Length / 3);
            return best is not null && bestDistance <= limit ? best : null;
        }

        private static int EditDistance(string a, string b)
        {
            var previous = new int[b.Length + 1];
            var current = new int[b.Length + 1];
            for (int j = 0; j <= b.Length; j++) previous[j] = j;
            for (int i = 1; i <= a.Length; i++)
            {
                current[0] = i;
                for (int j = 1; j <= b.Length; j++)
                {
                    int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                    current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost);
                }

                var swap = previous;
                previous = current;
                current = swap;
            }

            return previous[b.Length];
        }
    }
}
