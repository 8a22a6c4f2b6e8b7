using System;
using System.Collections.Generic;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;
using MoeCompiler.Generators.Json;

namespace MoeCompiler.Generators.Model
{
    /// <summary>
    /// A diagnostic in cacheable form (no Roslyn Location, which is not equatable across runs): descriptor id,
    /// message arguments and the position in the spec file.
    /// </summary>
    internal sealed record DiagnosticInfo(
        string DescriptorId,
        EquatableArray<string> Arguments,
        string FilePath,
        JsonPosition Position)
    {
        public static DiagnosticInfo Create(DiagnosticDescriptor descriptor, string filePath, JsonPosition position, params string[] arguments) =>
            new DiagnosticInfo(descriptor.Id, new EquatableArray<string>(arguments), filePath, position);

        public Diagnostic ToDiagnostic()
        {
            DiagnosticDescriptor descriptor = DiagnosticDescriptors.ById(DescriptorId);
            var location = Location.Create(
                FilePath,
                new TextSpan(Position.Offset, Position.Length),
                new LinePositionSpan(new LinePosition(Position.Line, Position.Column), new LinePosition(Position.EndLine, Position.EndColumn)));
            var args = new object[Arguments.Count];
            for (int i = 0; i < args.Length; i++) args[i] = Arguments[i];
            return Diagnostic.Create(descriptor, location, args);
        }
    }
}
