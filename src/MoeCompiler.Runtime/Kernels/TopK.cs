namespace MoeCompiler.Runtime.Kernels;

/// <summary>The routers' top-k (<see cref="Modules.MoeRouter"/>, Mixtral/CuMo routing): the k largest scores, largest
/// first; ties go to the lower index (as <c>torch.topk</c> does on CPU for small rows). A NaN score (a broken model)
/// ranks below every number, so routing still picks k distinct experts and the run does not stop.</summary>
public static class TopK
{
    /// <summary>Writes the indices (and values) of the <paramref name="k"/> largest <paramref name="scores"/>.</summary>
    public static void Select(ReadOnlySpan<float> scores, int k, Span<int> indices, Span<float> values)
    {
        Check(scores.Length, k, indices.Length);
        if (values.Length < k) throw new ArgumentException($"values holds {values.Length}, need {k}", nameof(values));
        SelectCore(scores, k, indices);
        for (int j = 0; j < k; j++) values[j] = scores[indices[j]];
    }

    /// <summary>Indices only.</summary>
    public static void Select(ReadOnlySpan<float> scores, int k, Span<int> indices)
    {
        Check(scores.Length, k, indices.Length);
        SelectCore(scores, k, indices);
    }

    /// <summary>Row by row over scores[rows, columns]: indices[rows, k] and values[rows, k].</summary>
    public static void SelectRows(ReadOnlySpan<float> scores, int columns, int k, Span<int> indices, Span<float> values)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        if (scores.Length % columns != 0) throw new ArgumentException($"{scores.Length} scores is not a multiple of {columns} columns");
        int rows = scores.Length / columns;
        if (indices.Length < rows * k || values.Length < rows * k) throw new ArgumentException($"outputs need {rows * k} entries");
        for (int r = 0; r < rows; r++)
            Select(scores.Slice(r * columns, columns), k, indices.Slice(r * k, k), values.Slice(r * k, k));
    }

    private static void Check(int length, int k, int indexCapacity)
    {
        if (k < 1 || k > length) throw new ArgumentOutOfRangeException(nameof(k), $"k = {k} for {length} scores");
        if (indexCapacity < k) throw new ArgumentException($"indices holds {indexCapacity}, need {k}");
    }

    // Strictly ahead: a larger number, or any number over a NaN; equal scores keep their order (lower index first).
    private static bool Ranks(float s, float other) => s > other || (float.IsNaN(other) && !float.IsNaN(s));

    // Insertion into a sorted prefix: k is tiny for routers (1–8), so this beats a heap and is exact about ties.
    private static void SelectCore(ReadOnlySpan<float> scores, int k, Span<int> indices)
    {
        int filled = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            float s = scores[i];
            if (filled == k && !Ranks(s, scores[indices[k - 1]])) continue;
            int position = filled < k ? filled++ : k - 1;
            while (position > 0 && Ranks(s, scores[indices[position - 1]]))
            {
                indices[position] = indices[position - 1];
                position--;
            }
            indices[position] = i;
        }
    }
}
