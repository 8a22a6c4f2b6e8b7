using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Modules;

/// <summary>Token ids → rows of the embedding table [vocab, hidden] (any dtype), as f32 [T, hidden].</summary>
public sealed class TokenEmbedding
{
    public TokenEmbedding(IBackend backend, Tensor table)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ModuleTensors.RequireRank(table, 2, "embedding table");
        VocabSize = table.Dim(0);
        HiddenSize = table.Dim(1);
        Table = backend.PrepareWeight(table);
    }

    public int VocabSize { get; }
    public int HiddenSize { get; }
    public Tensor Table { get; }

    public Tensor Forward(ForwardContext ctx, ReadOnlySpan<int> ids)
    {
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)VocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids),
                    $"token id {ids[i]} at position {i} is outside the embedding table [{VocabSize}, {HiddenSize}]" +
                    (ids[i] < 0 ? " (image placeholders must be spliced before embedding)" : ""));
        }
        var y = ctx.Backend.Allocate(DType.F32, ids.Length, HiddenSize);
        if (ids.Length > 0) ctx.Backend.Embedding(Table, ids, y);
        return y;
    }
}
