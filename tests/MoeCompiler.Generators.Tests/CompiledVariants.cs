using System.Reflection;
using System.Runtime.Loader;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace MoeCompiler.Generators.Tests;

/// <summary>
/// Every shipped spec run through the generator and compiled (warning level 9999, nullable, warnings reported)
/// against the runtime assembly and the trusted platform assemblies, then loaded. Built once per test class.
/// </summary>
public sealed class CompiledVariants
{
    public CompiledVariants()
    {
        // The shipped specs and the example project's own spec (its PR-MoE residual path is used nowhere else).
        var specs = RepoPaths.ShippedSpecs().Append(RepoPaths.ExampleSpec).ToArray();
        var run = GeneratorHarness.RunFiles(specs);
        GeneratorDiagnostics = run.Diagnostics;
        Sources = run.GeneratedSources.Select(s => (s.HintName, s.SourceText.ToString())).ToList();
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var trees = Sources.Select(s => CSharpSyntaxTree.ParseText(s.Item2, parse, path: s.HintName)).ToList();

        var options = new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary,
            nullableContextOptions: NullableContextOptions.Enable, warningLevel: 9999, deterministic: true,
            generalDiagnosticOption: ReportDiagnostic.Default);
        var compilation = CSharpCompilation.Create("MoeCompiler.Models.Compiled", trees, References.All, options);
        using var stream = new MemoryStream();
        var emit = compilation.Emit(stream);
        CompilerDiagnostics = emit.Diagnostics.Where(d => d.Severity >= DiagnosticSeverity.Warning).ToList();
        if (emit.Success)
        {
            stream.Position = 0;
            Assembly = new AssemblyLoadContext("variants", isCollectible: true).LoadFromStream(stream);
        }
    }

    public IReadOnlyList<Diagnostic> GeneratorDiagnostics { get; }
    public IReadOnlyList<Diagnostic> CompilerDiagnostics { get; }
    public List<(string HintName, string Text)> Sources { get; }
    public Assembly? Assembly { get; }

    public Type VariantType(string name) => Assembly!.GetType("MoeCompiler.Models." + name, throwOnError: true)!;

    public Type ConstantsType(string name) => Assembly!.GetType("MoeCompiler.Models." + name + "Constants", throwOnError: true)!;

    public T Constant<T>(string variant, string field) => (T)ConstantsType(variant).GetField(field)!.GetValue(null)!;

    public MoeCompiler.Runtime.Checkpoints.WeightManifest Manifest(string variant) =>
        (MoeCompiler.Runtime.Checkpoints.WeightManifest)VariantType(variant).GetProperty("Manifest")!.GetValue(null)!;
}

/// <summary>One compilation of every variant, shared by the test classes that need it.</summary>
[CollectionDefinition(Name)]
public sealed class CompiledVariantsCollection : ICollectionFixture<CompiledVariants>
{
    public const string Name = "Compiled variants";
}
