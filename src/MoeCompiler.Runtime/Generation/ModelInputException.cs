namespace MoeCompiler.Runtime.Generation;

/// <summary>An input the model cannot take (a prompt too long, ids outside its vocabulary): the caller's to fix.</summary>
public sealed class ModelInputException(string message) : Exception(message);
