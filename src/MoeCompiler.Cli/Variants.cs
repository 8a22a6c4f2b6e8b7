using System.Text.Json;
using MoeCompiler.Models;
using MoeCompiler.Runtime.Generation;

namespace MoeCompiler.Cli;

/// <summary>Finds a compiled variant by name, display name or the spec file that defines it.</summary>
internal static class Variants
{
    // spec files are a few kilobytes
    private const long MaxSpecBytes = 16 << 20;

    public static ModelCatalogEntry Resolve(string nameOrSpec)
    {
        string name = nameOrSpec;
        if (nameOrSpec.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            if (!File.Exists(nameOrSpec)) throw new UserInputException($"spec file not found: {nameOrSpec}");
            name = ReadSpecName(nameOrSpec);
        }
        foreach (var entry in ModelCatalog.Variants)
            if (string.Equals(entry.Name, name, StringComparison.OrdinalIgnoreCase) ||
                string.Equals(entry.DisplayName, name, StringComparison.OrdinalIgnoreCase))
                return entry;

        string? nearest = Nearest(name);
        string hint = nearest is null ? "" : $" Did you mean '{nearest}'?";
        string compiled = nameOrSpec.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
            ? $" The spec '{nameOrSpec}' defines '{name}', which is not compiled into this tool: add the file to modelspecs/ and rebuild."
            : "";
        throw new UserInputException($"unknown variant '{name}'.{hint}{compiled} Run 'moe list' to see the variants.");
    }

    /// <summary>Refuses images for a text-only variant before any weights are loaded.</summary>
    public static void EnsureTakesImages(ModelCatalogEntry entry, int images, string option = "-i")
    {
        if (images > 0 && !entry.ModelDescription.HasVision)
            throw new UserInputException($"{entry.Name} is text-only: it takes no image (leave out {option})");
    }

    private static string ReadSpecName(string path)
    {
        try
        {
            byte[] bytes = MoeCompiler.IO.RegularFile.ReadAllBytes(path, MaxSpecBytes, (problem, _) => new UserInputException($"{path}: {problem}"));
            using var doc = JsonDocument.Parse(MoeCompiler.IO.RegularFile.WithoutByteOrderMark(bytes));
            if (doc.RootElement.ValueKind == JsonValueKind.Object &&
                doc.RootElement.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String)
                return n.GetString()!;
            throw new UserInputException($"{path}: the spec has no string \"name\"");
        }
        catch (JsonException e)
        {
            throw new UserInputException($"{path}: not valid JSON (line {e.LineNumber + 1}): {e.Message}");
        }
    }

    private static string? Nearest(string name)
    {
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (var entry in ModelCatalog.Variants)
        {
            int d = Distance(name.ToLowerInvariant(), entry.Name.ToLowerInvariant());
            if (d < bestDistance)
            {
                bestDistance = d;
                best = entry.Name;
            }
        }
        return bestDistance <= Math.Max(3, name.Length / 3) ? best : null;
    }

    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) previous[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
