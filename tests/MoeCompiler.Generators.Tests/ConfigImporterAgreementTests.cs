using System.Collections;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoeCompiler.Generators.Model;
using MoeCompiler.Generators.Parsing;
using MoeCompiler.Runtime.Checkpoints;
using MoeCompiler.Tooling;

namespace MoeCompiler.Generators.Tests;

/// <summary>
/// Specs imported from the released models' config.json files (the checkpoint side's ConfigImporter) are valid specs
/// for the generator and equal the shipped spec of the same model in every field of the spec model.
/// </summary>
public class ConfigImporterAgreementTests
{
    private static VariantModel Parse(string name, string json)
    {
        var result = SpecParser.Parse(name, json);
        Assert.Empty(result.Diagnostics.Select(d => d.ToDiagnostic().ToString()));
        return result.Variant!;
    }

    private static string Config(string file) => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "TestData", "configs", file));

    private static string ShippedPath(string shipped) => Path.Combine(RepoPaths.ModelSpecs, shipped + ".json");

    /// <summary>The sections of the spec model; name, displayName and description describe, they do not build.</summary>
    private static IEnumerable<(string Section, object? Value)> Sections(VariantModel v)
    {
        yield return ("llm", v.Llm);
        yield return ("moe", v.Moe);
        yield return ("vision", v.Vision);
        yield return ("projector", v.Projector);
        yield return ("tokenizer", v.Tokenizer);
        yield return ("prompt.template", v.Template);
        yield return ("checkpoint.layout", v.Layout);
    }

    /// <summary>
    /// Every leaf field, by path: the primary-constructor parameters of each model record (the fields the parser
    /// fills; computed properties are left out), nested records followed, absent sections as "null".
    /// </summary>
    private static void Flatten(string path, object? value, Type declared, SortedDictionary<string, string> into)
    {
        var type = Nullable.GetUnderlyingType(declared) ?? declared;
        bool isModelRecord = type.Namespace == typeof(LlmModel).Namespace && type.IsClass && type.Name.EndsWith("Model", StringComparison.Ordinal);
        if (!isModelRecord)
        {
            into[path] = Show(value);
            return;
        }

        var parameters = type.GetConstructors().OrderByDescending(c => c.GetParameters().Length).First().GetParameters();
        if (value is null)
        {
            // A null section still names its fields, so "MoE here, none there" shows up field by field.
            foreach (var p in parameters) into[path + "." + p.Name] = "null (no " + path + " section)";
            return;
        }

        foreach (var p in parameters)
        {
            var property = type.GetProperty(p.Name!, BindingFlags.Public | BindingFlags.Instance)!;
            Flatten(path + "." + p.Name, property.GetValue(value), property.PropertyType, into);
        }
    }

    private static string Show(object? value) => value switch
    {
        null => "null",
        string s => "\"" + s + "\"",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        IEnumerable e => "[" + string.Join(", ", e.Cast<object>().Select(Show)) + "]",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    private static SortedDictionary<string, string> Fields(VariantModel v)
    {
        var fields = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (section, value) in Sections(v))
        {
            var declared = section switch
            {
                "llm" => typeof(LlmModel),
                "moe" => typeof(MoeModel),
                "vision" => typeof(VisionModel),
                "projector" => typeof(ProjectorModel),
                "tokenizer" => typeof(TokenizerModel),
                _ => typeof(string),
            };
            Flatten(section, value, declared, fields);
        }

        return fields;
    }

    /// <summary>One line per field that differs, naming the field and both values.</summary>
    private static List<string> Differences(SortedDictionary<string, string> imported, SortedDictionary<string, string> shipped)
    {
        var differences = new List<string>();
        foreach (var key in imported.Keys.Union(shipped.Keys).OrderBy(k => k, StringComparer.Ordinal))
        {
            string a = imported.TryGetValue(key, out var x) ? x : "(absent)";
            string b = shipped.TryGetValue(key, out var y) ? y : "(absent)";
            if (a != b) differences.Add($"{key}: config.json imports {a}, the shipped spec has {b}");
        }

        return differences;
    }

    public static TheoryData<string, string> ReleasedModels => new()
    {
        { "moe-llava-stablelm-1.6b-4e.json", "moellava-stablelm-4e" },
        { "moe-llava-stablelm-1.6b-4e-384.json", "moellava-stablelm-4e-384" },
        { "moe-llava-qwen-1.8b-4e.json", "moellava-qwen-4e" },
        { "moe-llava-phi2-2.7b-4e.json", "moellava-phi2-4e" },
        { "moe-llava-phi2-2.7b-4e-384.json", "moellava-phi2-4e-384" },
        { "cumo-mistral-7b.json", "cumo-mistral-7b" },
        { "cumo-mixtral-8x7b.json", "cumo-mixtral-8x7b" },
        // A plain LLM config: a text-only spec, no tower and no projector.
        { "mixtral-8x7b-instruct-v0.1.json", "mixtral-8x7b-instruct" },
    };

    [Theory]
    [MemberData(nameof(ReleasedModels))]
    public void ImportedSpecEqualsTheShippedSpecFieldByField(string config, string shipped)
    {
        var imported = Parse("imported.json", ConfigImporter.ImportSpec(Config(config), name: "Imported"));
        var expected = Parse(ShippedPath(shipped), File.ReadAllText(ShippedPath(shipped)));

        var importedFields = Fields(imported);
        var shippedFields = Fields(expected);
        var differences = Differences(importedFields, shippedFields);
        Assert.True(differences.Count == 0,
            $"{config} imported differs from modelspecs/{shipped}.json in {differences.Count} field(s):\n  " + string.Join("\n  ", differences));

        // The comparison really covers the spec model: the fields a regression would most likely touch are in it.
        var covered = new SortedSet<string>
        {
            "llm.Family", "llm.VocabSize", "llm.TokenizerSize", "llm.HeadDim", "llm.RotaryDims", "llm.FfnKind", "llm.ParallelResidual",
            "moe.Experts", "moe.Layers", "moe.Routing", "moe.CapacityFactor", "vision.Tower", "vision.Scales",
            "projector.Kind", "tokenizer.Kind", "tokenizer.Bos", "tokenizer.Eos", "prompt.template", "checkpoint.layout",
        };
        // A text-only spec has no tower or projector section, so the fields nested inside them are not there.
        if (expected.Vision is not null) covered.UnionWith(["vision.Moe.Experts", "projector.Moe.TopK"]);
        Assert.Superset(covered, new SortedSet<string>(importedFields.Keys));
        Assert.Equal(shippedFields.Count, importedFields.Count);
        Assert.InRange(importedFields.Count, 50, 200);

        // The same tensors, keys and shapes: the architecture is what the weights must fit.
        var importedPlan = new MoeCompiler.Generators.Emit.WeightPlan(imported);
        var expectedPlan = new MoeCompiler.Generators.Emit.WeightPlan(expected);
        Assert.Equal(
            expectedPlan.Tensors.Select(t => t.Key + " " + string.Join("x", t.Shape)),
            importedPlan.Tensors.Select(t => t.Key + " " + string.Join("x", t.Shape)));
    }

    [Fact]
    public void FieldComparisonNamesEachDifferingField()
    {
        // The comparison above is only as good as its messages: one line per field, both values shown.
        var phi = Parse(ShippedPath("moellava-phi2-4e"), File.ReadAllText(ShippedPath("moellava-phi2-4e")));
        var changed = phi with
        {
            Tokenizer = phi.Tokenizer with { Kind = "gpt2" },
            Llm = phi.Llm with { TokenizerSize = 50296 },
            Vision = phi.Vision! with { Moe = new SideMoeModel(4, 2) },
        };
        var differences = Differences(Fields(changed), Fields(phi));
        Assert.Equal(new[]
        {
            "llm.TokenizerSize: config.json imports 50296, the shipped spec has 50295",
            "tokenizer.Kind: config.json imports \"gpt2\", the shipped spec has \"phi2\"",
            "vision.Moe.Experts: config.json imports 4, the shipped spec has null (no vision.Moe section)",
            "vision.Moe.TopK: config.json imports 2, the shipped spec has null (no vision.Moe section)",
        }, differences);
    }

    [Fact]
    public void PlainMixtralImportsTheCuMoMixtralLanguageModel()
    {
        // A plain Mixtral config has no vision tower: the importer writes a text-only spec ("vision" and "projector"
        // null) whose language model is CuMo-Mixtral's.
        var imported = JsonNode.Parse(ConfigImporter.ImportSpec(Config("mixtral-8x7b.json")))!.AsObject();
        var shipped = JsonNode.Parse(File.ReadAllText(ShippedPath("cumo-mixtral-8x7b")))!.AsObject();
        var differences = new List<string>();
        foreach (string section in new[] { "llm", "moe", "tokenizer" })
        {
            var a = imported[section]!.AsObject();
            var b = shipped[section]!.AsObject();
            foreach (var key in a.Select(p => p.Key).Union(b.Select(p => p.Key)))
            {
                if (!JsonNode.DeepEquals(Normalise(a[key]), Normalise(b[key])))
                    differences.Add($"{section}.{key}: config.json imports {a[key]?.ToJsonString() ?? "(absent)"}, the shipped spec has {b[key]?.ToJsonString() ?? "(absent)"}");
            }
        }

        Assert.True(differences.Count == 0, "mixtral-8x7b.json differs from cumo-mixtral-8x7b.json:\n  " + string.Join("\n  ", differences));
        Assert.Equal("Mixtral", imported["name"]!.GetValue<string>());
        Assert.Null(imported["vision"]);
        Assert.Null(imported["projector"]);
        Assert.Equal("plain", imported["prompt"]!["template"]!.GetValue<string>());
        var variant = Parse("mixtral.json", imported.ToJsonString());
        Assert.Null(variant.Vision);
        Assert.Null(variant.Projector);
    }

    /// <summary>Numbers compared by value (1e-5 and 1E-05 are the same number).</summary>
    private static JsonNode? Normalise(JsonNode? node) => node switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => JsonValue.Create(v.GetValue<double>()),
        JsonObject o => new JsonObject(o.Select(p => KeyValuePair.Create(p.Key, Normalise(p.Value)))),
        JsonArray a => new JsonArray(a.Select(Normalise).ToArray()),
        _ => node?.DeepClone(),
    };

    [Fact]
    public void TinyConfigIsRefusedAtImportInsteadOfGivingASpecTheGeneratorRejects()
    {
        // vocab_size 512 cannot hold arcade100k's end-of-sequence id 100257: the importer stops with the reason.
        var e = Assert.Throws<CheckpointException>(() => ConfigImporter.ImportSpec(Config("tiny-stablelm-moe.config.json"), sourcePath: "/m/config.json"));
        Assert.StartsWith("/m/config.json: config.json cannot be imported", e.Message);
        Assert.Contains("the end-of-sequence id 100257 is outside the vocabulary of 512 ids ('vocab_size')", e.Message);
    }
}
