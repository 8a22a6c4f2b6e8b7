using System.Text;
using System.Text.RegularExpressions;

namespace MoeCompiler.Tokenizers.Tests.Benchmarks;

/// <summary>The textbook form of tiktoken's algorithm, written independently of the library: .NET Regex
/// splitting, a dictionary from byte strings to ranks, and merging by re-scanning every adjacent pair and
/// concatenating strings, with no cache. It is the baseline for the throughput comparison and a second
/// oracle for the fast encoder.</summary>
internal sealed class NaiveBpe
{
    private readonly Dictionary<string, int> _ranks = new();
    private readonly Regex _split;

    public NaiveBpe(string tiktokenFile, string pattern)
    {
        foreach (string line in File.ReadLines(tiktokenFile))
        {
            if (line.Length == 0) continue;
            string[] parts = line.Split(' ');
            _ranks[Encoding.Latin1.GetString(Convert.FromBase64String(parts[0]))] = int.Parse(parts[1]);
        }
        _split = new Regex(pattern, RegexOptions.CultureInvariant);
    }

    public List<int> Encode(string text)
    {
        var ids = new List<int>();
        foreach (Match match in _split.Matches(text))
        {
            byte[] bytes = Encoding.UTF8.GetBytes(match.Value);
            var parts = bytes.Select(b => ((char)b).ToString()).ToList();
            while (parts.Count > 1)
            {
                int best = -1, bestRank = int.MaxValue;
                for (int i = 0; i + 1 < parts.Count; i++)
                {
                    if (_ranks.TryGetValue(parts[i] + parts[i + 1], out int rank) && rank < bestRank)
                    {
                        bestRank = rank;
                        best = i;
                    }
                }
                if (best < 0) break;
                parts[best] += parts[best + 1];
                parts.RemoveAt(best + 1);
            }
            ids.AddRange(parts.Select(p => _ranks[p]));
        }
        return ids;
    }
}
