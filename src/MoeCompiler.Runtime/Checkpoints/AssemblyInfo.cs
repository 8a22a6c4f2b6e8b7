using System.Runtime.CompilerServices;

// The checkpoint tests fuzz the header parser and the unpickler directly.
[assembly: InternalsVisibleTo("MoeCompiler.Checkpoints.Tests")]
