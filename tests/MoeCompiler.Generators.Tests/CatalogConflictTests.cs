using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace MoeCompiler.Generators.Tests;

/// <summary>
/// A consumer project that references an assembly compiled from specs (the MoeCompiler.Models package) and compiles
/// a spec of its own into the same default namespace: nothing the generator declares may clash with the referenced
/// assembly's types (CS0436: source type conflicts with an imported type; CS0433: the same type in two references).
/// </summary>
public class CatalogConflictTests
{
    private static readonly CSharpParseOptions Parse = new(LanguageVersion.Latest);

    private static (string Path, string Text) Spec(string file) =>
        ("/specs/" + file, File.ReadAllText(Path.Combine(RepoPaths.ModelSpecs, file)));

    /// <summary>Runs the generator over <paramref name="spec"/> in a compilation named <paramref name="assembly"/>.</summary>
    private static Compilation Compile(string assembly, (string Path, string Text) spec, IEnumerable<MetadataReference> extra, params string[] sources)
    {
        var compilation = CSharpCompilation.Create(assembly, sources.Select(s => CSharpSyntaxTree.ParseText(s, Parse)),
            References.All.Concat(extra), new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        var driver = GeneratorHarness.CreateDriver(new[] { new InMemoryAdditionalText(spec.Path, spec.Text) });
        driver.RunGeneratorsAndUpdateCompilation(compilation, out var output, out var diagnostics);
        Assert.Empty(diagnostics);
        return output;
    }

    private static MetadataReference ModelsAssembly()
    {
        var models = Compile("MoeCompiler.Models", Spec("tiny-qwen-moe.json"), []);
        using var image = new MemoryStream();
        var emitted = models.Emit(image);
        Assert.True(emitted.Success, string.Join("\n", emitted.Diagnostics));
        return MetadataReference.CreateFromImage(image.ToArray());
    }

    private static string[] Problems(Compilation compilation) =>
        compilation.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning).Select(d => d.ToString()).ToArray();

    [Fact]
    public void AConsumerWithItsOwnSpecThatReferencesTheModelsAssemblyCompilesWithoutWarnings()
    {
        const string use = """
            namespace Consumer
            {
                public static class Use
                {
                    // Both catalogs, their entries of the one runtime type, and a variant from each assembly.
                    public static int Count() => global::System.Linq.Enumerable.Count(global::System.Linq.Enumerable.Concat(
                        MoeCompiler.Models.ModelCatalog.Variants, MoeCompiler.Models.PackageConsumerModelCatalog.Variants));

                    public static long Parameters() => MoeCompiler.Models.TinyQwenMoeConstants.TotalParameters + MoeCompiler.Models.TinyPhiMoeConstants.TotalParameters;
                }
            }
            """;
        var consumer = Compile("PackageConsumer", Spec("tiny-phi-moe.json"), [ModelsAssembly()], use);
        Assert.Empty(Problems(consumer));
        Assert.NotNull(consumer.GetTypeByMetadataName("MoeCompiler.Models.PackageConsumerModelCatalog"));
        Assert.Null(consumer.Assembly.GetTypeByMetadataName("MoeCompiler.Models.ModelCatalog"));
        Assert.Null(consumer.Assembly.GetTypeByMetadataName("MoeCompiler.Models.ModelCatalogEntry"));
    }

    [Fact]
    public void WithoutAReferencedCatalogTheCatalogIsModelCatalog()
    {
        var alone = Compile("PackageConsumer", Spec("tiny-phi-moe.json"), []);
        Assert.Empty(Problems(alone));
        Assert.NotNull(alone.Assembly.GetTypeByMetadataName("MoeCompiler.Models.ModelCatalog"));
    }

    /// <summary>The check above can fail: a type declared again in the consumer is CS0436.</summary>
    [Fact]
    public void TheCheckSeesADuplicatedCatalogType()
    {
        var clash = Compile("PackageConsumer", Spec("tiny-phi-moe.json"), [ModelsAssembly()],
            "namespace MoeCompiler.Models { public static class ModelCatalog { } public static class Use { public static object V() => ModelCatalog.Variants; } }");
        Assert.Contains(clash.GetDiagnostics(), d => d.Id == "CS0436");
    }

    [Theory]
    [InlineData("PackageConsumer", "PackageConsumerModelCatalog")]
    [InlineData("contoso.vision-app", "ContosoVisionAppModelCatalog")]
    [InlineData("3d.viewer", "_3dViewerModelCatalog")]
    public void TheCatalogIsNamedAfterTheAssemblyWhenTheDefaultNameIsTaken(string assembly, string expected)
    {
        var compilation = CSharpCompilation.Create(assembly, [], References.All.Append(ModelsAssembly()));
        Assert.Equal(expected, ModelSpecGenerator.CatalogClassName(compilation, ModelSpecGenerator.DefaultNamespace));
        Assert.Equal("ModelCatalog", ModelSpecGenerator.CatalogClassName(compilation, "Contoso.Models"));
    }
}
