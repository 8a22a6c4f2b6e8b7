using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Inference.Tests.Generation;

/// <summary>
/// A deterministic stand-in for a compiled variant. Text token t embeds as [t, 0]; each image becomes
/// <see cref="ImageRows"/> rows [ImageValue + pixel[0], 1]. Forward writes every row into the KV cache at its
/// absolute position and predicts, for each row, the token (sum of column 0 over cache rows 0..position) mod 10 + 1,
/// (+ <c>idOffset</c>), so the output depends on every earlier position having been written where it belongs. It
/// also puts a larger logit on <see cref="OutOfTokenizerId"/> (≥ tokenizer size) that a correct sampler must never
/// pick. With a routing recorder on the context it records one "llm" layer-0 top-1 choice per row (target mod 2).
/// </summary>
internal sealed class FakeCountingModel : IVisionLanguageModel
{
    public const int Vocab = 16;
    public const int TokenizerSize = 12;
    public const int OutOfTokenizerId = 14;
    public const int ImageRows = 3;
    public const float ImageValue = 100;
    private readonly int _vocab;
    private readonly int _idOffset;
    private readonly int _outOfTokenizerId;

    public FakeCountingModel(int maxPositions = 4096, int[]? eos = null, int vocab = Vocab, int tokenizerSize = TokenizerSize,
        int idOffset = 0, string template = "plain", int? bos = 1)
    {
        _vocab = vocab;
        _idOffset = idOffset;
        _outOfTokenizerId = tokenizerSize + 2 < vocab ? tokenizerSize + 2 : -1;
        Description = new ModelDescription
        {
            Name = "FakeCounting", DisplayName = "fake", LlmFamily = "mistral", VocabSize = vocab, TokenizerSize = tokenizerSize,
            HiddenSize = 2, Layers = 1, Heads = 1, KvHeads = 1, HeadDim = 2, MaxPositions = maxPositions,
            MoeLayers = [0], Experts = 2, TopK = 1, TokenizerKind = "sentencepiece", EosIds = eos ?? [11], BosId = bos,
            PromptTemplate = template, VisionTower = "clip", ImageSize = 2, ImageTokens = ImageRows,
            ImageMean = [0, 0, 0], ImageStd = [1, 1, 1], VisionScales = [1], TotalParameters = 0, ActivatedParameters = 0,
        };
    }

    public ModelDescription Description { get; }
    public DType LlmWeightDType => DType.F32;
    public List<(int Start, int Rows, bool[]? IsImage)> ForwardCalls { get; } = new();
    public int ImagesEncoded { get; private set; }
    /// <summary>Runs inside every Forward (e.g. to cancel mid-generation).</summary>
    public Action<int>? OnForward { get; set; }

    public Tensor EncodeImage(ForwardContext context, Tensor pixels)
    {
        Assert.Null(context.Cache);
        ImagesEncoded++;
        var y = context.Backend.Allocate(DType.F32, ImageRows, 2);
        for (int r = 0; r < ImageRows; r++)
        {
            y.AsFloats()[r * 2] = ImageValue + pixels.AsFloats()[0];
            y.AsFloats()[r * 2 + 1] = 1;
        }
        return y;
    }

    public Tensor EmbedTokens(ForwardContext context, ReadOnlySpan<int> ids)
    {
        var y = context.Backend.Allocate(DType.F32, ids.Length, 2);
        for (int i = 0; i < ids.Length; i++)
        {
            Assert.InRange(ids[i], 0, _vocab - 1);
            y.AsFloats()[i * 2] = ids[i];
            y.AsFloats()[i * 2 + 1] = 0;
        }
        return y;
    }

    public Tensor Forward(ForwardContext context, Tensor embeddings)
    {
        var cache = context.Cache ?? throw new InvalidOperationException("the LLM forward needs a cache");
        int rows = embeddings.Dim(0);
        Assert.Equal(cache.Length, context.StartPosition);          // positions continue where the cache ends
        Assert.True(context.StartPosition + rows <= cache.Capacity, "cache overflow");
        ForwardCalls.Add((context.StartPosition, rows, context.IsImageToken?.ToArray()));
        OnForward?.Invoke(ForwardCalls.Count);
        var keys = cache.Keys(0).AsFloats();
        for (int t = 0; t < rows; t++)
        {
            keys[(context.StartPosition + t) * 2] = embeddings.AsFloats()[t * 2];
            keys[(context.StartPosition + t) * 2 + 1] = embeddings.AsFloats()[t * 2 + 1];
        }
        var logits = context.Backend.Allocate(DType.F32, rows, _vocab);
        var l = logits.AsFloats();
        var chosen = new int[rows];
        for (int t = 0; t < rows; t++)
        {
            double sum = 0;
            for (int p = 0; p <= context.StartPosition + t; p++) sum += keys[p * 2];
            int target = (int)(sum % 10) + 1 + _idOffset;
            chosen[t] = target % 2;
            for (int v = 0; v < _vocab; v++) l[t * _vocab + v] = v == target ? 3f : -(v % 97) * 0.01f;
            if (_outOfTokenizerId >= 0) l[t * _vocab + _outOfTokenizerId] = 9f;
        }
        context.Routing?.Record("llm", 0, context.StartPosition, rows, 1, 2, chosen, Enumerable.Repeat(1f, rows).ToArray(), context.IsImageToken);
        return logits;
    }

    /// <summary>The expected greedy continuation, computed directly from the rule.</summary>
    public static List<int> ExpectedGreedy(IEnumerable<float> promptColumn0, int count, int? stopAt = null, int idOffset = 0)
    {
        double sum = promptColumn0.Sum(v => (double)v);
        var ids = new List<int>();
        for (int i = 0; i < count; i++)
        {
            int next = (int)(sum % 10) + 1 + idOffset;
            if (next == stopAt) break;
            ids.Add(next);
            sum += next;
        }
        return ids;
    }
}

/// <summary>Decodes id i as the letter 'a' + i (a stand-in for the tokenizer's streaming decoder).</summary>
internal sealed class LetterDecoder : MoeCompiler.Runtime.Generation.ITokenTextDecoder
{
    public string Push(int id) => ((char)('a' + id)).ToString();
    public string Flush() => "";
}
