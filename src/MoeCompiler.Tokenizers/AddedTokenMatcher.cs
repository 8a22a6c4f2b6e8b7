using System.Buffers;

namespace MoeCompiler.Tokenizers;

/// <summary>A token matched verbatim in the text before the model's own algorithm runs (special tokens and
/// "added tokens" such as Phi-2's whitespace runs).</summary>
public sealed record AddedToken(string Content, int Id, bool IsSpecial);

/// <summary>Finds added tokens in text, leftmost first and longest at a position (Hugging Face's
/// leftmost-longest rule; tiktoken's special-token regex gives the same result for its token sets).</summary>
internal sealed class AddedTokenMatcher
{
    private sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public int Id = -1;
    }

    private readonly Node _root = new();
    private readonly SearchValues<char> _firstChars;
    private readonly bool _empty;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        var first = new HashSet<char>();
        foreach (AddedToken token in tokens)
        {
            if (token.Content.Length == 0) continue;
            Node node = _root;
            foreach (char c in token.Content)
            {
                node.Children ??= new Dictionary<char, Node>();
                if (!node.Children.TryGetValue(c, out Node? child))
                    node.Children[c] = child = new Node();
                node = child;
            }
            node.Id = token.Id;
            first.Add(token.Content[0]);
        }
        _empty = first.Count == 0;
        _firstChars = SearchValues.Create(first.ToArray());
    }

    /// <summary>Finds the first added token at or after <paramref name="from"/>.</summary>
    public bool TryFindNext(ReadOnlySpan<char> text, int from, out int start, out int length, out int id)
    {
        start = length = 0;
        id = -1;
        if (_empty) return false;
        int position = from;
        while (position < text.Length)
        {
            int offset = text[position..].IndexOfAny(_firstChars);
            if (offset < 0) return false;
            position += offset;
            int matchLength = LongestAt(text, position, out id);
            if (matchLength > 0)
            {
                start = position;
                length = matchLength;
                return true;
            }
            position++;
        }
        return false;
    }

    private int LongestAt(ReadOnlySpan<char> text, int position, out int id)
    {
        id = -1;
        int best = 0;
        Node node = _root;
        for (int i = position; i < text.Length; i++)
        {
            if (node.Children is null || !node.Children.TryGetValue(text[i], out Node? child)) break;
            node = child;
            if (node.Id >= 0)
            {
                best = i - position + 1;
                id = node.Id;
            }
        }
        return best;
    }
}
