using System.Text;

namespace MoeCompiler.Runtime.Generation;

/// <summary>
/// Streams text while watching for stop strings: text that could still turn out to be the start of a stop string
/// is held back, so the caller never sees any part of the stop string.
/// </summary>
public sealed class StopStringMatcher
{
    private readonly string[] _stops;
    private readonly StringBuilder _pending = new();

    public StopStringMatcher(IEnumerable<string> stopStrings)
    {
        _stops = stopStrings.ToArray();
        foreach (string s in _stops)
            if (string.IsNullOrEmpty(s)) throw new ArgumentException("stop strings must not be empty", nameof(stopStrings));
    }

    public bool Stopped { get; private set; }

    /// <summary>Adds decoded text; returns the text that is now safe to release.</summary>
    public string Push(string text)
    {
        if (Stopped) return "";
        _pending.Append(text);
        string pending = _pending.ToString();
        int stopAt = -1;
        foreach (string s in _stops)
        {
            int at = pending.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (stopAt < 0 || at < stopAt)) stopAt = at;
        }
        if (stopAt >= 0)
        {
            Stopped = true;
            _pending.Clear();
            return pending[..stopAt];
        }
        int hold = LongestSuffixThatStartsAStop(pending);
        _pending.Clear().Append(pending, pending.Length - hold, hold);
        return pending[..^hold];
    }

    /// <summary>At the end of generation: everything still held back (it did not become a stop string).</summary>
    public string Flush()
    {
        if (Stopped) return "";
        string rest = _pending.ToString();
        _pending.Clear();
        return rest;
    }

    private int LongestSuffixThatStartsAStop(string text)
    {
        int best = 0;
        foreach (string s in _stops)
            for (int length = Math.Min(s.Length - 1, text.Length); length > best; length--)
                if (string.CompareOrdinal(text, text.Length - length, s, 0, length) == 0)
                {
                    best = length;
                    break;
                }
        return best;
    }
}
