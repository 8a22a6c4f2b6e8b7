using System;
using System.Collections.Immutable;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;
using MoeCompiler.Generators.Emit;
using MoeCompiler.Generators.Model;
using MoeCompiler.Generators.Parsing;

namespace MoeCompiler.Generators
{
    /// <summary>
    /// The model compiler's pipeline. Its inputs are AdditionalFiles (spec JSON files), the MSBuild namespace
    /// property and, for the catalog's class name only, the referenced assemblies: editing C# re-runs nothing but
    /// that one name lookup (CatalogName, a string compared for equality); every stage produces equatable values so
    /// unchanged specs are served from the cache.
    /// <code>
    /// SpecFiles -> ParsedSpecs -> (+ VariantNames) -> CheckedSpecs -> Diagnostics    -> reported diagnostics
    ///                                                 CheckedSpecs -> VariantModels  -> variant sources
    ///                                                 CheckedSpecs -> CatalogEntries -> (+ CatalogName) -> ModelCatalog.g.cs
    /// </code>
    /// Diagnostics (which carry file positions) and variant models (which carry none) are separate outputs, as in
    /// dotnet/runtime's System.Text.Json generator: an edit that only moves text in a spec changes positions, so
    /// diagnostics are re-reported, but the variant model is equal and its code is not emitted again.
    /// </summary>
    [Generator(LanguageNames.CSharp)]
    public sealed class ModelSpecGenerator : IIncrementalGenerator
    {
        /// <summary>Tracking names of the pipeline steps (tests assert on their run reasons).</summary>
        public static class Steps
        {
            public const string SpecFiles = "SpecFiles";
            public const string ParsedSpecs = "ParsedSpecs";
            public const string VariantNames = "VariantNames";
            public const string CheckedSpecs = "CheckedSpecs";
            public const string CatalogEntries = "CatalogEntries";
            public const string Diagnostics = "Diagnostics";
            public const string VariantModels = "VariantModels";
            public const string Namespace = "Namespace";
            public const string CatalogName = "CatalogName";
        }

        public void Initialize(IncrementalGeneratorInitializationContext context)
        {
            IncrementalValuesProvider<AdditionalText> specFiles = context.AdditionalTextsProvider
                .Where(static file => IsSpecFile(file.Path))
                .WithTrackingName(Steps.SpecFiles);

            IncrementalValuesProvider<SpecResult> parsed = specFiles
                .Select(static (file, cancellationToken) => ParseFile(file, cancellationToken))
                .WithTrackingName(Steps.ParsedSpecs);

            // Only names and paths: editing a spec's numbers leaves this unchanged, so other specs stay cached.
            IncrementalValueProvider<EquatableArray<NamedFile>> names = parsed
                .Select(static (result, _) => new NamedFile(result.Name, result.FilePath))
                .Collect()
                .Select(static (all, _) => new EquatableArray<NamedFile>(all))
                .WithTrackingName(Steps.VariantNames);

            IncrementalValuesProvider<SpecResult> checkedSpecs = parsed
                .Combine(names)
                .Select(static (pair, _) => CheckDuplicateNames(pair.Left, pair.Right))
                .WithTrackingName(Steps.CheckedSpecs);

            IncrementalValuesProvider<EquatableArray<DiagnosticInfo>> diagnostics = checkedSpecs
                .Select(static (result, _) => result.Diagnostics)
                .WithTrackingName(Steps.Diagnostics);

            context.RegisterSourceOutput(diagnostics, static (output, items) =>
            {
                foreach (DiagnosticInfo diagnostic in items) output.ReportDiagnostic(diagnostic.ToDiagnostic());
            });

            IncrementalValuesProvider<VariantModel> variants = checkedSpecs
                .Where(static result => result.Variant is not null)
                .Select(static (result, _) => result.Variant!)
                .WithTrackingName(Steps.VariantModels);

            // The namespace of the generated code: MSBuild property MoeCompilerNamespace (made visible by build/MoeCompiler.Generators.props).
            IncrementalValueProvider<string?> namespaceProperty = context.AnalyzerConfigOptionsProvider
                .Select(static (options, _) => options.GlobalOptions.TryGetValue("build_property." + NamespaceProperty, out string? value) &&
                    !string.IsNullOrWhiteSpace(value) ? value.Trim() : null)
                .WithTrackingName(Steps.Namespace);

            context.RegisterSourceOutput(namespaceProperty, static (output, value) =>
            {
                if (value is not null && !IsValidNamespace(value))
                {
                    output.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.InvalidNamespace, Location.None, value, DefaultNamespace));
                }
            });

            IncrementalValueProvider<string> generatedNamespace = namespaceProperty
                .Select(static (value, _) => value is not null && IsValidNamespace(value) ? value : DefaultNamespace);

            context.RegisterSourceOutput(variants.Combine(generatedNamespace), static (output, pair) =>
                output.AddSource(VariantEmitter.HintName(pair.Left), SourceText.From(VariantEmitter.Emit(pair.Left, pair.Right), System.Text.Encoding.UTF8)));

            IncrementalValueProvider<EquatableArray<CatalogEntryModel>> catalog = variants
                .Select(static (variant, _) => VariantEmitter.CatalogEntry(variant))
                .Collect()
                .Select(static (all, _) => new EquatableArray<CatalogEntryModel>(all))
                .WithTrackingName(Steps.CatalogEntries);

            // The catalog's class name: ModelCatalog, unless a referenced assembly (the MoeCompiler.Models package, say)
            // already has one in the generated namespace; then it is named after this assembly, so that a project which
            // compiles its own specs and references another catalog declares no type twice (no CS0436).
            IncrementalValueProvider<(string Namespace, string ClassName)> catalogName = context.CompilationProvider
                .Combine(generatedNamespace)
                .Select(static (pair, _) => (pair.Right, CatalogClassName(pair.Left, pair.Right)))
                .WithTrackingName(Steps.CatalogName);

            context.RegisterSourceOutput(catalog.Combine(catalogName), static (output, pair) =>
                output.AddSource(CatalogEmitter.HintName, SourceText.From(
                    CatalogEmitter.Emit(pair.Left, pair.Right.Namespace, pair.Right.ClassName), System.Text.Encoding.UTF8)));
        }

        /// <summary>The MSBuild property that names the generated namespace.</summary>
        public const string NamespaceProperty = "MoeCompilerNamespace";

        /// <summary>Where variants go unless the project says otherwise.</summary>
        public const string DefaultNamespace = "MoeCompiler.Models";

        /// <summary>Dotted C# identifiers, none a keyword ("global::" and aliases are not namespace names).</summary>
        public static bool IsValidNamespace(string name)
        {
            foreach (string part in name.Split('.'))
            {
                if (!Microsoft.CodeAnalysis.CSharp.SyntaxFacts.IsValidIdentifier(part) ||
                    Microsoft.CodeAnalysis.CSharp.SyntaxFacts.GetKeywordKind(part) != Microsoft.CodeAnalysis.CSharp.SyntaxKind.None)
                {
                    return false;
                }
            }

            return true;
        }

        /// <summary>
        /// <see cref="CatalogEmitter.DefaultClassName"/>, or, when an assembly this one references already declares a
        /// public catalog of that name in <paramref name="generatedNamespace"/>, this assembly's name as an identifier
        /// followed by it (PackageConsumer.dll: PackageConsumerModelCatalog).
        /// </summary>
        public static string CatalogClassName(Compilation compilation, string generatedNamespace)
        {
            string metadataName = generatedNamespace + "." + CatalogEmitter.DefaultClassName;
            foreach (INamedTypeSymbol type in compilation.GetTypesByMetadataName(metadataName))
            {
                if (!SymbolEqualityComparer.Default.Equals(type.ContainingAssembly, compilation.Assembly) &&
                    type.DeclaredAccessibility == Accessibility.Public)
                {
                    return IdentifierOf(compilation.AssemblyName) + CatalogEmitter.DefaultClassName;
                }
            }

            return CatalogEmitter.DefaultClassName;
        }

        /// <summary>An assembly name as a C# identifier: letters, digits and '_' kept, each part after '.', '-' or ' ' capitalised.</summary>
        private static string IdentifierOf(string? assemblyName)
        {
            var identifier = new System.Text.StringBuilder();
            bool upper = true;
            foreach (char c in assemblyName ?? "")
            {
                if (char.IsLetterOrDigit(c) || c == '_')
                {
                    identifier.Append(upper ? char.ToUpperInvariant(c) : c);
                    upper = false;
                }
                else
                {
                    upper = true;
                }
            }

            if (identifier.Length == 0 || char.IsDigit(identifier[0])) identifier.Insert(0, '_');
            return identifier.ToString();
        }

        /// <summary>Spec files: *.json except JSON Schemas (*.schema.json).</summary>
        public static bool IsSpecFile(string path) =>
            path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) &&
            !path.EndsWith(".schema.json", StringComparison.OrdinalIgnoreCase);

        private static SpecResult ParseFile(AdditionalText file, CancellationToken cancellationToken)
        {
            SourceText? text = file.GetText(cancellationToken);
            return SpecParser.Parse(file.Path, text?.ToString() ?? "");
        }

        private static SpecResult CheckDuplicateNames(SpecResult result, EquatableArray<NamedFile> all)
        {
            if (result.Name is null) return result;
            string? other = null;
            foreach (NamedFile named in all)
            {
                if (string.Equals(named.Name, result.Name, StringComparison.OrdinalIgnoreCase) && named.Path != result.FilePath &&
                    (other is null || string.CompareOrdinal(SpecParser.FileNameOf(named.Path), other) < 0))
                {
                    other = SpecParser.FileNameOf(named.Path);
                }
            }

            if (other is null) return result;
            var diagnostics = new System.Collections.Generic.List<DiagnosticInfo>(result.Diagnostics)
            {
                DiagnosticInfo.Create(DiagnosticDescriptors.DuplicateVariantName, result.FilePath, result.NamePosition, result.Name, other),
            };
            return result with { Variant = null, Diagnostics = new EquatableArray<DiagnosticInfo>(diagnostics) };
        }
    }

    internal sealed record NamedFile(string? Name, string Path);
}
