using System.Reflection;
using MoeCompiler.Generators.Model;

namespace MoeCompiler.Generators.Tests;

/// <summary>The typed model's vocabularies: every enum value has exactly one spec spelling, and it round-trips.</summary>
public class SpecVocabularyTests
{
    public static TheoryData<string> Vocabularies() => new(typeof(SpecNames).GetFields(BindingFlags.Public | BindingFlags.Static).Select(f => f.Name));

    [Theory]
    [MemberData(nameof(Vocabularies))]
    public void EveryEnumValueHasOneSpecNameThatParsesBackToIt(string field)
    {
        object vocabulary = typeof(SpecNames).GetField(field)!.GetValue(null)!;
        Type enumType = vocabulary.GetType().GetGenericArguments()[0];
        var names = (string[])vocabulary.GetType().GetProperty("Names")!.GetValue(vocabulary)!;
        Assert.Equal(Enum.GetValues(enumType).Length, names.Length);
        Assert.Equal(names.Length, names.Distinct(StringComparer.Ordinal).Count());
        MethodInfo nameOf = vocabulary.GetType().GetMethod("NameOf")!;
        MethodInfo tryParse = vocabulary.GetType().GetMethod("TryParse")!;
        foreach (object value in Enum.GetValues(enumType))
        {
            string name = (string)nameOf.Invoke(vocabulary, [value])!;
            object?[] args = [name, null];
            Assert.True((bool)tryParse.Invoke(vocabulary, args)!);
            Assert.Equal(value, args[1]);
        }
    }

    [Fact]
    public void UnknownSpellingsDoNotParse()
    {
        Assert.False(SpecNames.Families.TryParse("Qwen", out _)); // spec strings are case-sensitive, as before
        Assert.True(SpecNames.Families.TryParse("qwen", out LlmFamily family));
        Assert.Equal(LlmFamily.Qwen, family);
    }
}

/// <summary>The family profiles are what the parser checks specs against.</summary>
public class FamilyProfileTests
{
    [Theory]
    [InlineData("qwen", "llm.ffnKind", "swiglu", "LLM family 'qwen' has a 'qwen-swiglu' FFN")]
    [InlineData("phi", "llm.parallelResidual", "false", "Phi blocks have one shared norm and a parallel residual")]
    public void TheParserEnforcesTheProfilesCombinations(string family, string key, string value, string expected)
    {
        Assert.Equal(family, SpecNames.Families.NameOf(Profiles.Families.Single(p => p.SpecName == family).Family));
        string ffn = Profiles.Of(Profiles.Families.Single(p => p.SpecName == family).Ffn).SpecName;
        string ffnValue = key == "llm.ffnKind" ? "\"" + value + "\"" : "\"" + ffn + "\"";
        string parallel = key == "llm.parallelResidual" ? value : "true";
        string spec = $$"""
            { "name": "P", "llm": { "family": "{{family}}", "vocabSize": 64, "hiddenSize": 32, "layers": 2, "heads": 4,
              "ffnSize": 48, "ffnKind": {{ffnValue}}, "norm": "layernorm", "normEps": 1e-5, "parallelResidual": {{parallel}} },
              "vision": null, "tokenizer": { "kind": "gpt2", "bos": null, "eos": [1] }, "prompt": { "template": "plain" } }
            """;
        var result = MoeCompiler.Generators.Parsing.SpecParser.Parse("p.json", spec);
        Assert.Contains(result.Diagnostics, d => d.ToDiagnostic().GetMessage().Contains(expected, StringComparison.Ordinal));
        Assert.Null(result.Variant);
    }

    [Fact]
    public void EveryFamilyProfileNamesItsExpectedFfnAndDistinctKeys()
    {
        foreach (FamilyProfile profile in Profiles.Families)
        {
            Assert.Contains(profile.Ffn, SpecNames.FfnKinds.Values);
            Assert.EndsWith(".", profile.LayerPrefix, StringComparison.Ordinal);
            Assert.EndsWith(".", profile.ExpertPrefix, StringComparison.Ordinal);
            Assert.NotEqual(profile.InputNorm, profile.PostAttentionNorm);
        }
    }
}
