using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Tests.Kernels;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;
using static MoeCompiler.Runtime.Tests.Modules.Naive;

namespace MoeCompiler.Runtime.Tests.Modules;

/// <summary>Linear, norms, embeddings and the dense feed-forwards against plain loops (f32 vs double: atol 1e-5, rtol 1e-4).</summary>
public sealed class BasicModuleTests
{
    private const double Atol = 1e-5, Rtol = 1e-4;
    private static readonly IBackend Backend = new CpuBackend(2);
    private static ForwardContext Ctx() => new(Backend);

    [Fact]
    public void LinearWithAndWithoutBiasMatchesLoops()
    {
        var random = new Random(1);
        var x = RandomArray(random, 5 * 7);
        var w = RandomArray(random, 3 * 7);
        var b = RandomArray(random, 3);
        var withBias = new Linear(Backend, Tensor(w, 3, 7), Tensor(b, 3));
        var noBias = new Linear(Backend, Tensor(w, 3, 7), null);
        Assert.Equal(7, withBias.InFeatures);
        Assert.Equal(3, withBias.OutFeatures);
        var input = Tensor(x, 5, 7);
        AssertClose(Linear(D(x), 5, w, b, 3, 7), withBias.Forward(Ctx(), input), Atol, Rtol);
        AssertClose(Linear(D(x), 5, w, null, 3, 7), noBias.Forward(Ctx(), input), Atol, Rtol);
        Assert.Equal(x, input.ToFloatArray()); // input untouched
    }

    [Fact]
    public void LinearAcceptsBf16WeightAndBias()
    {
        var random = new Random(2);
        var w = KernelTestUtil.RandomWeight(random, DType.BF16, 4, 6);
        var b = KernelTestUtil.RandomWeight(random, DType.BF16, 1, 4).Reshape(4);
        var x = RandomArray(random, 2 * 6);
        var linear = new Linear(Backend, w, b);
        AssertClose(Linear(D(x), 2, w.ToFloatArray(), b.ToFloatArray(), 4, 6), linear.Forward(Ctx(), Tensor(x, 2, 6)), Atol, Rtol);
    }

    [Fact]
    public void LinearRejectsWrongShapesWithClearMessages()
    {
        var w = Tensor(new float[12], 3, 4);
        var ex = Assert.Throws<ArgumentException>(() => new Linear(Backend, w, Tensor(new float[4], 4)));
        Assert.Contains("bias", ex.Message);
        var linear = new Linear(Backend, w, null);
        var ex2 = Assert.Throws<ArgumentException>(() => linear.Forward(Ctx(), Tensor(new float[10], 2, 5)));
        Assert.Contains("[rows, 4]", ex2.Message);
    }

    [Fact]
    public void NormsMatchLoops()
    {
        var random = new Random(3);
        var x = RandomArray(random, 4 * 10, 3);
        var w = RandomArray(random, 10);
        var b = RandomArray(random, 10);
        var ln = new LayerNorm(Backend, Tensor(w, 10), Tensor(b, 10), 1e-5f);
        AssertClose(LayerNorm(D(x), 10, w, b, 1e-5), ln.Forward(Ctx(), Tensor(x, 4, 10)), Atol, Rtol, "layernorm");
        var lnNoBias = new LayerNorm(Backend, Tensor(w, 10), null, 1e-6f);
        AssertClose(LayerNorm(D(x), 10, w, null, 1e-6), lnNoBias.Forward(Ctx(), Tensor(x, 4, 10)), Atol, Rtol, "layernorm no bias");
        var rms = new RmsNorm(Backend, Tensor(w, 10), 1e-6f);
        AssertClose(RmsNorm(D(x), 10, w, 1e-6), rms.Forward(Ctx(), Tensor(x, 4, 10)), Atol, Rtol, "rmsnorm");
    }

    [Fact]
    public void TokenEmbeddingLooksUpRowsAndRejectsBadIds()
    {
        var random = new Random(4);
        var table = RandomArray(random, 9 * 3);
        var embedding = new TokenEmbedding(Backend, Tensor(table, 9, 3));
        var y = embedding.Forward(Ctx(), [8, 0, 3, 3]).ToFloatArray();
        int[] ids = [8, 0, 3, 3];
        for (int i = 0; i < ids.Length; i++)
            for (int c = 0; c < 3; c++) Assert.Equal(table[ids[i] * 3 + c], y[i * 3 + c]);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => embedding.Forward(Ctx(), [1, -200]));
        Assert.Contains("-200", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => embedding.Forward(Ctx(), [9]));
    }

    [Fact]
    public void SwiGluFeedForwardIsDownOfSiluGateTimesUp()
    {
        var random = new Random(5);
        int h = 6, f = 10, rows = 3;
        var (gate, up, down) = (RandomArray(random, f * h), RandomArray(random, f * h), RandomArray(random, h * f));
        var x = RandomArray(random, rows * h, 2);
        var ffn = new SwiGluFeedForward(new Linear(Backend, Tensor(gate, f, h), null), new Linear(Backend, Tensor(up, f, h), null),
            new Linear(Backend, Tensor(down, h, f), null));
        var g = Linear(D(x), rows, gate, null, f, h);
        var u = Linear(D(x), rows, up, null, f, h);
        var inner = new double[g.Length];
        for (int i = 0; i < g.Length; i++) inner[i] = Silu(g[i]) * u[i];
        AssertClose(Linear(inner, rows, down, null, h, f), ffn.Forward(Ctx(), Tensor(x, rows, h)), Atol, Rtol);
    }

    [Fact]
    public void QwenFeedForwardPutsSiluOnW2()
    {
        var random = new Random(6);
        int h = 5, f = 8, rows = 4;
        var (w1, w2, proj) = (RandomArray(random, f * h), RandomArray(random, f * h), RandomArray(random, h * f));
        var x = RandomArray(random, rows * h, 2);
        var ffn = new QwenFeedForward(new Linear(Backend, Tensor(w1, f, h), null), new Linear(Backend, Tensor(w2, f, h), null),
            new Linear(Backend, Tensor(proj, h, f), null));
        var a1 = Linear(D(x), rows, w1, null, f, h);
        var a2 = Linear(D(x), rows, w2, null, f, h);
        var inner = new double[a1.Length];
        for (int i = 0; i < a1.Length; i++) inner[i] = a1[i] * Silu(a2[i]);
        AssertClose(Linear(inner, rows, proj, null, h, f), ffn.Forward(Ctx(), Tensor(x, rows, h)), Atol, Rtol);
    }

    [Theory]
    [InlineData(Activation.GeluErf)]
    [InlineData(Activation.GeluTanh)]
    [InlineData(Activation.QuickGelu)]
    [InlineData(Activation.Silu)]
    public void GeluFeedForwardMatchesLoops(Activation activation)
    {
        var random = new Random(7 + (int)activation);
        int h = 4, f = 9, rows = 3;
        var (fc1, b1, fc2, b2) = (RandomArray(random, f * h), RandomArray(random, f), RandomArray(random, h * f), RandomArray(random, h));
        var x = RandomArray(random, rows * h, 3);
        var ffn = new GeluFeedForward(new Linear(Backend, Tensor(fc1, f, h), Tensor(b1, f)),
            new Linear(Backend, Tensor(fc2, h, f), Tensor(b2, h)), activation);
        var hidden = Map(Linear(D(x), rows, fc1, b1, f, h), v => Act(v, activation));
        AssertClose(Linear(hidden, rows, fc2, b2, h, f), ffn.Forward(Ctx(), Tensor(x, rows, h)), Atol, Rtol, activation.ToString());
    }

    [Fact]
    public void FeedForwardConstructorsRejectMismatchedShapes()
    {
        var a = new Linear(Backend, Tensor(new float[12], 4, 3), null);
        var b = new Linear(Backend, Tensor(new float[15], 5, 3), null);
        var down = new Linear(Backend, Tensor(new float[12], 3, 4), null);
        Assert.Throws<ArgumentException>(() => new SwiGluFeedForward(a, b, down));
        Assert.Throws<ArgumentException>(() => new QwenFeedForward(a, b, down));
        Assert.Throws<ArgumentException>(() => new GeluFeedForward(b, down, Activation.GeluErf));
    }

    [Fact]
    public void ReleaseFreesOwnedActivationsButNotViews()
    {
        var owned = Backend.Allocate(DType.F32, 4, 3);
        var view = owned.SliceRows(1, 2);
        TensorLifetime.Release(view);
        Assert.False(owned.Storage.IsDisposed);
        TensorLifetime.Release(owned);
        Assert.True(owned.Storage.IsDisposed);
        TensorLifetime.Release(null);
        var managed = new Tensor(new ManagedStorage(16), 0, DType.F32, [4]);
        TensorLifetime.Release(managed);
        Assert.False(managed.Storage.IsDisposed);
    }
}
