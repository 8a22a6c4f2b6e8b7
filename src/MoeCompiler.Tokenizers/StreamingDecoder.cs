using System.Text;

namespace MoeCompiler.Tokenizers;

/// <summary>Decodes generated ids one at a time. A character whose UTF-8 bytes are spread over several tokens
/// is held back until it is complete, so the concatenation of all <see cref="Push"/> results and
/// <see cref="Flush"/> equals <see cref="ITokenizer.Decode"/> of the whole sequence.</summary>
public sealed class StreamingDecoder
{
    private readonly TokenizerBase _tokenizer;
    private readonly bool _skipSpecial;
    private readonly List<byte> _pending = new();
    private readonly System.Text.StringBuilder _uncleaned = new(); // decoded text not yet past a safe clean-up cut
    private bool _atStart = true;

    internal StreamingDecoder(TokenizerBase tokenizer, bool skipSpecial)
    {
        _tokenizer = tokenizer;
        _skipSpecial = skipSpecial;
    }

    /// <summary>Adds one id; returns the text that is now complete (possibly empty).</summary>
    public string Push(int id)
    {
        _tokenizer.AppendTokenBytes(id, _skipSpecial, _pending);
        int complete = Utf8Text.CompletePrefixLength(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending));
        return Emit(complete);
    }

    /// <summary>Returns whatever is still held back (an unfinished character becomes U+FFFD) and resets.</summary>
    public string Flush()
    {
        string text = Emit(_pending.Count);
        if (_tokenizer.CleansUpTokenizationSpaces)
        {
            text += TokenizationSpaces.CleanUp(_uncleaned.ToString());
            _uncleaned.Clear();
        }
        _atStart = true;
        return text;
    }

    private string Emit(int byteCount)
    {
        if (byteCount == 0) return string.Empty;
        var bytes = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending)[..byteCount];
        string text = Encoding.UTF8.GetString(bytes);
        _pending.RemoveRange(0, byteCount);
        if (_atStart && text.Length > 0)
        {
            _atStart = false;
            if (_tokenizer.StripsLeadingSpace && text[0] == ' ') text = text[1..];
        }
        return _tokenizer.CleansUpTokenizationSpaces ? CleanUpUpToSafeCut(text) : text;
    }

    // Clean-up replacements look a few characters ahead, so text is held back until a character that no
    // replacement involves; cleaning up to there gives the same as cleaning the whole text at the end.
    private string CleanUpUpToSafeCut(string text)
    {
        _uncleaned.Append(text);
        int cut = _uncleaned.Length;
        while (cut > 0 && !TokenizationSpaces.IsSafeCutAfter(_uncleaned[cut - 1])) cut--;
        if (cut == 0) return string.Empty;
        string ready = _uncleaned.ToString(0, cut);
        _uncleaned.Remove(0, cut);
        return TokenizationSpaces.CleanUp(ready);
    }
}
