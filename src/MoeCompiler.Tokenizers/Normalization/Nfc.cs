using System.Text;

namespace MoeCompiler.Tokenizers.Normalization;

/// <summary>Unicode Normalization Form C (UAX #15: canonical decomposition, canonical ordering, canonical
/// composition), from tables generated out of Python's unicodedata. Needed because the runtime runs with
/// InvariantGlobalization, where string.Normalize leaves text unchanged.</summary>
internal static partial class Nfc
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Dictionary<int, int[]> Decompositions = new();
    private static readonly Dictionary<int, byte> CombiningClasses = new();
    private static readonly Dictionary<long, int> Compositions = new();
    // Code points that may change under NFC or make a neighbour change; text without them is already NFC.
    private static readonly HashSet<int> QuickCheckFails = new();

    static Nfc()
    {
        ReadOnlySpan<int> ccc = CombiningClassData;
        for (int i = 0; i < ccc.Length; i += 2)
        {
            CombiningClasses[ccc[i]] = (byte)ccc[i + 1];
            QuickCheckFails.Add(ccc[i]);
        }
        var excluded = new HashSet<int>(CompositionExclusionData.ToArray());
        QuickCheckFails.UnionWith(excluded);

        var oneLevel = new Dictionary<int, int[]>();
        ReadOnlySpan<int> d = DecompositionData;
        for (int i = 0; i < d.Length;)
        {
            int cp = d[i], n = d[i + 1];
            int[] parts = d.Slice(i + 2, n).ToArray();
            oneLevel[cp] = parts;
            if (n == 2 && !excluded.Contains(cp))
            {
                Compositions[Key(parts[0], parts[1])] = cp;
                QuickCheckFails.Add(parts[1]);
            }
            i += 2 + n;
        }
        foreach (int cp in oneLevel.Keys)
        {
            var full = new List<int>();
            Expand(cp, oneLevel, full);
            Decompositions[cp] = full.ToArray();
        }
        for (int v = VBase; v < VBase + VCount; v++) QuickCheckFails.Add(v);
        for (int t = TBase + 1; t < TBase + TCount; t++) QuickCheckFails.Add(t);
    }

    private static void Expand(int cp, Dictionary<int, int[]> oneLevel, List<int> output)
    {
        if (oneLevel.TryGetValue(cp, out int[]? parts))
            foreach (int p in parts) Expand(p, oneLevel, output);
        else output.Add(cp);
    }

    private static long Key(int a, int b) => ((long)a << 21) | (uint)b;

    private static int CombiningClass(int cp) => CombiningClasses.TryGetValue(cp, out byte c) ? c : 0;

    public static bool IsNormalized(ReadOnlySpan<char> text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c < 0x300) continue;
            int cp = c;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                cp = char.ConvertToUtf32(c, text[++i]);
            if (QuickCheckFails.Contains(cp)) return false;
        }
        return true;
    }

    /// <summary>NFC of <paramref name="text"/>; lone surrogates pass through unchanged.</summary>
    public static string Normalize(string text)
    {
        if (IsNormalized(text)) return text;

        var cps = new List<int>(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            int cp = text[i];
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                cp = char.ConvertToUtf32(text[i], text[++i]);
            Decompose(cp, cps);
        }
        SortCanonically(cps);
        Compose(cps);

        var builder = new StringBuilder(text.Length);
        foreach (int cp in cps)
        {
            if (cp is >= 0xD800 and <= 0xDFFF) builder.Append((char)cp);
            else builder.Append(char.ConvertFromUtf32(cp));
        }
        return builder.ToString();
    }

    private static void Decompose(int cp, List<int> output)
    {
        int s = cp - SBase;
        if (s is >= 0 and < SCount)
        {
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) output.Add(TBase + s % TCount);
            return;
        }
        if (Decompositions.TryGetValue(cp, out int[]? parts)) output.AddRange(parts);
        else output.Add(cp);
    }

    // Stable insertion sort of each run of non-starters by combining class.
    private static void SortCanonically(List<int> cps)
    {
        for (int i = 1; i < cps.Count; i++)
        {
            int cc = CombiningClass(cps[i]);
            if (cc == 0) continue;
            int j = i;
            int cp = cps[i];
            while (j > 0 && CombiningClass(cps[j - 1]) > cc)
            {
                cps[j] = cps[j - 1];
                j--;
            }
            cps[j] = cp;
        }
    }

    private static void Compose(List<int> cps)
    {
        if (cps.Count == 0) return;
        int starterPos = 0;
        int starter = cps[0];
        int lastClass = CombiningClass(starter) == 0 ? 0 : 256;
        int write = 1;
        for (int read = 1; read < cps.Count; read++)
        {
            int ch = cps[read];
            int chClass = CombiningClass(ch);
            // Not blocked: nothing between the starter and ch, or everything between has a lower class.
            if ((lastClass == 0 || lastClass < chClass) && TryCompose(starter, ch, out int composite))
            {
                cps[starterPos] = composite;
                starter = composite;
                continue;
            }
            if (chClass == 0)
            {
                starterPos = write;
                starter = ch;
            }
            lastClass = chClass;
            cps[write++] = ch;
        }
        cps.RemoveRange(write, cps.Count - write);
    }

    private static bool TryCompose(int first, int second, out int composite)
    {
        int l = first - LBase, v = second - VBase;
        if (l is >= 0 and < LCount && v is >= 0 and < VCount)
        {
            composite = SBase + (l * VCount + v) * TCount;
            return true;
        }
        int s = first - SBase, t = second - TBase;
        if (s is >= 0 and < SCount && s % TCount == 0 && t is > 0 and < TCount)
        {
            composite = first + t;
            return true;
        }
        return Compositions.TryGetValue(Key(first, second), out composite);
    }
}
