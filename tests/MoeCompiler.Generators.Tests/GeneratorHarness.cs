using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Text;

namespace MoeCompiler.Generators.Tests;

/// <summary>An in-memory additional file, as MSBuild would hand a spec to the generator.</summary>
internal sealed class InMemoryAdditionalText : AdditionalText
{
    private readonly SourceText _text;

    public InMemoryAdditionalText(string path, string text)
    {
        Path = path;
        _text = SourceText.From(text);
    }

    public override string Path { get; }

    public override SourceText GetText(CancellationToken cancellationToken = default) => _text;
}

/// <summary>Runs <see cref="ModelSpecGenerator"/> over spec texts without MSBuild.</summary>
internal static class GeneratorHarness
{
    public static CSharpCompilation EmptyCompilation(params SyntaxTree[] trees) =>
        CSharpCompilation.Create("Variants", trees, References.All, new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));

    public static GeneratorDriver CreateDriver(IEnumerable<AdditionalText> specs, bool track = false) =>
        CSharpGeneratorDriver.Create(
            new[] { new ModelSpecGenerator().AsSourceGenerator() },
            specs,
            parseOptions: new CSharpParseOptions(LanguageVersion.Latest),
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: track));

    public static GeneratorRunResult Run(params (string Path, string Text)[] specs)
    {
        var driver = CreateDriver(specs.Select(s => (AdditionalText)new InMemoryAdditionalText(s.Path, s.Text)));
        driver = driver.RunGenerators(EmptyCompilation());
        return driver.GetRunResult().Results.Single();
    }

    public static GeneratorRunResult RunFiles(params string[] paths) =>
        Run(paths.Select(p => ("/specs/" + Path.GetFileName(p), File.ReadAllText(p))).ToArray());

    /// <summary>"MOE002 (3,5)-(3,12) file.json: message", 1-based lines and columns, file name only.</summary>
    public static string Format(Diagnostic d)
    {
        var span = d.Location.GetLineSpan();
        return $"{d.Id} ({span.StartLinePosition.Line + 1},{span.StartLinePosition.Character + 1})-({span.EndLinePosition.Line + 1},{span.EndLinePosition.Character + 1}) {Path.GetFileName(span.Path)}: {d.GetMessage(System.Globalization.CultureInfo.InvariantCulture)}";
    }
}

/// <summary>Metadata references for compiling generated code: the runtime assembly and the trusted platform assemblies.</summary>
internal static class References
{
    public static ImmutableArray<MetadataReference> All { get; } = Load();

    private static ImmutableArray<MetadataReference> Load()
    {
        var paths = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Where(p => Path.GetFileName(p).StartsWith("System.", StringComparison.Ordinal) || Path.GetFileName(p) is "mscorlib.dll" or "netstandard.dll")
            .ToList();
        paths.Add(typeof(MoeCompiler.Runtime.Tensors.Tensor).Assembly.Location);
        return paths.Distinct(StringComparer.Ordinal).OrderBy(p => p, StringComparer.Ordinal)
            .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToImmutableArray();
    }
}
