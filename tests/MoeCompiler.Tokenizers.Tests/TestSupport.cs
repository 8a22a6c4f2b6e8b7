using System.Text;

namespace MoeCompiler.Tokenizers.Tests;

internal static class TestSupport
{
    public static string TestData(params string[] parts) => Path.Combine([AppContext.BaseDirectory, "TestData", .. parts]);

    public static string DataDirectory => TokenizerLoader.DefaultDataDirectory;

    private static readonly Dictionary<string, ITokenizer> Cache = new();

    /// <summary>Loading a vocabulary takes a moment; tests share one instance per kind.</summary>
    public static ITokenizer Kind(string kind)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(kind, out ITokenizer? tokenizer))
                Cache[kind] = tokenizer = TokenizerLoader.ForKind(kind);
            return tokenizer;
        }
    }

    public static IReadOnlyList<string> VectorStrings()
    {
        string text = File.ReadAllText(TestData("vectors", "strings.inp"), Encoding.UTF8);
        var parts = text.Split("\n__ggml_vocab_test__\n");
        return parts[..^1];
    }

    public static IReadOnlyList<int[]> VectorIds(string file)
    {
        return File.ReadAllText(TestData("vectors", file), Encoding.UTF8).Split('\n')
            .Take(VectorStrings().Count)
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray())
            .ToList();
    }

    public static string Show(IEnumerable<int> ids) => string.Join(' ', ids);
}
