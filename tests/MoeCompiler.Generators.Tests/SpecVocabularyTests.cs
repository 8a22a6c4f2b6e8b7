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
