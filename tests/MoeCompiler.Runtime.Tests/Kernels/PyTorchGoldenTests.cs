using System.Text.Json;
using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using MoeCompiler.TestSupport;
using Xunit;
using static MoeCompiler.Runtime.Tests.Kernels.KernelTestUtil;

namespace MoeCompiler.Runtime.Tests.Kernels;

/// <summary>
/// The CPU kernels against PyTorch 1.13 outputs (TestData/Kernels/kernel_goldens.json, made by
/// TestData/make_kernel_goldens.py), on every instruction-set path.
/// </summary>
public sealed class PyTorchGoldenTests
{
    private static readonly CpuBackend[] s_backends = Isas.Select(isa => new CpuBackend(2, isa)).ToArray();
    private static readonly Lazy<JsonElement[]> s_cases = new(() =>
    {
        string path = Path.Combine(AppContext.BaseDirectory, "TestData", "Kernels", "kernel_goldens.json");
        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        return document.RootElement.GetProperty("cases").EnumerateArray().Select(e => e.Clone()).ToArray();
    });

    private static IEnumerable<JsonElement> Cases(string kind) => s_cases.Value.Where(c => c.GetProperty("kind").GetString() == kind);

    private static float[] Floats(JsonElement c, string name) => c.GetProperty(name).EnumerateArray().Select(e => e.GetSingle()).ToArray();
    private static int[] Ints(JsonElement c, string name) => c.GetProperty(name).EnumerateArray().Select(e => e.GetInt32()).ToArray();

    [Fact]
    public void EveryKindHasCases()
    {
        foreach (var kind in new[] { "bicubic", "gelu_erf", "gelu_tanh", "quick_gelu", "silu", "softmax", "layer_norm", "rms_norm", "rotary", "attention", "patch_embed", "avg_pool", "topk" })
            Assert.NotEmpty(Cases(kind));
    }

    [Fact]
    public void BicubicMatchesPyTorch()
    {
        foreach (var c in Cases("bicubic"))
        {
            int[] shape = Ints(c, "shape"), size = Ints(c, "out");
            var x = Tensor.FromFloats(Floats(c, "x"), shape);
            var expected = Floats(c, "y");
            foreach (var backend in s_backends)
            {
                var y = Poisoned(shape[0], size[0], size[1]);
                backend.UpsampleBicubic(x, size[0], size[1], y);
                AssertClose(expected, y, 2e-6, 1e-5, $"bicubic {string.Join('x', shape)}→{size[0]}x{size[1]} {backend.Name}");
            }
            var reference = Poisoned(shape[0], size[0], size[1]);
            ReferenceKernels.UpsampleBicubic(x, size[0], size[1], reference);
            AssertClose(expected, reference, 2e-6, 1e-5, "reference bicubic");
        }
    }

    [Theory]
    [InlineData("gelu_erf", Activation.GeluErf)]
    [InlineData("gelu_tanh", Activation.GeluTanh)]
    [InlineData("quick_gelu", Activation.QuickGelu)]
    [InlineData("silu", Activation.Silu)]
    public void ActivationsMatchPyTorch(string kind, Activation activation)
    {
        var c = Cases(kind).Single();
        float[] xs = Floats(c, "x"), expected = Floats(c, "y");
        var x = Tensor.FromFloats(xs, xs.Length);
        foreach (var backend in s_backends)
        {
            var y = Poisoned(xs.Length);
            backend.Activate(x, activation, y);
            AssertClose(expected, y, 1e-6, 1e-5, $"{kind} {backend.Name}");
        }
        var reference = Poisoned(xs.Length);
        ReferenceKernels.Activate(x, activation, reference);
        AssertClose(expected, reference, 1e-6, 1e-5, "reference " + kind);
    }

    [Fact]
    public void SoftmaxAndNormsMatchPyTorch()
    {
        foreach (var backend in s_backends)
        {
            var s = Cases("softmax").Single();
            int[] shape = Ints(s, "shape");
            var y = Poisoned(shape);
            backend.Softmax(Tensor.FromFloats(Floats(s, "x"), shape), y);
            AssertClose(Floats(s, "y"), y, 1e-7, 1e-5, "softmax " + backend.Name);

            var ln = Cases("layer_norm").Single();
            shape = Ints(ln, "shape");
            y = Poisoned(shape);
            backend.LayerNorm(Tensor.FromFloats(Floats(ln, "x"), shape), Tensor.FromFloats(Floats(ln, "w"), shape[1]),
                Tensor.FromFloats(Floats(ln, "b"), shape[1]), ln.GetProperty("eps").GetSingle(), y);
            AssertClose(Floats(ln, "y"), y, 1e-5, 1e-5, "layer_norm " + backend.Name);

            var rms = Cases("rms_norm").Single();
            y = Poisoned(shape);
            backend.RmsNorm(Tensor.FromFloats(Floats(rms, "x"), shape), Tensor.FromFloats(Floats(rms, "w"), shape[1]), rms.GetProperty("eps").GetSingle(), y);
            AssertClose(Floats(rms, "y"), y, 1e-5, 1e-5, "rms_norm " + backend.Name);
        }
    }

    [Fact]
    public void RotaryMatchesHuggingFaceConvention()
    {
        var c = Cases("rotary").Single();
        int[] s = Ints(c, "shape"); // tokens, heads, headDim, rotaryDims, start
        foreach (var backend in s_backends)
        {
            var x = Tensor.FromFloats(Floats(c, "x"), s[0], s[1] * s[2]);
            backend.Rotary(x, s[1], s[2], s[3], c.GetProperty("theta").GetSingle(), s[4]);
            // PyTorch forms the angle in f32 (position · f32 inverse frequency); we form it in double.
            AssertClose(Floats(c, "y"), x, 2e-6, 1e-5, "rotary " + backend.Name);
        }
    }

    [Fact]
    public void AttentionMatchesPyTorch()
    {
        foreach (var c in Cases("attention"))
        {
            int[] s = Ints(c, "shape"); // queries, keys, heads, kvHeads, headDim, causal, queryStart
            var q = Tensor.FromFloats(Floats(c, "q"), s[0], s[2] * s[4]);
            var k = Tensor.FromFloats(Floats(c, "k"), s[1], s[3] * s[4]);
            var v = Tensor.FromFloats(Floats(c, "v"), s[1], s[3] * s[4]);
            foreach (var backend in s_backends)
            {
                var y = Poisoned(s[0], s[2] * s[4]);
                backend.Attention(q, k, v, y, s[2], s[3], s[4], s[5] != 0, s[6]);
                AssertClose(Floats(c, "y"), y, 1e-5, 1e-5, "attention " + backend.Name);
            }
        }
    }

    [Fact]
    public void PatchEmbedPoolingAndTopKMatchPyTorch()
    {
        var p = Cases("patch_embed").Single();
        int[] s = Ints(p, "shape"); // channels, height, width, outChannels, patch
        var image = Tensor.FromFloats(Floats(p, "x"), s[0], s[1], s[2]);
        var weight = Tensor.FromFloats(Floats(p, "w"), s[3], s[0], s[4], s[4]);
        var bias = Tensor.FromFloats(Floats(p, "b"), s[3]);
        var a = Cases("avg_pool").Single();
        int[] g = Ints(a, "shape"); // height, width, channels, kernel
        foreach (var backend in s_backends)
        {
            var y = Poisoned(s[1] / s[4] * (s[2] / s[4]), s[3]);
            backend.PatchEmbed(image, weight, bias, s[4], y);
            AssertClose(Floats(p, "y"), y, 1e-5, 1e-5, "patch_embed " + backend.Name);

            var pooled = Poisoned(g[0] / g[3] * (g[1] / g[3]), g[2]);
            backend.AvgPool2d(Tensor.FromFloats(Floats(a, "x"), g[0] * g[1], g[2]), g[0], g[1], g[3], pooled);
            AssertClose(Floats(a, "y"), pooled, 1e-6, 1e-6, "avg_pool " + backend.Name);
        }

        var t = Cases("topk").Single();
        int[] ts = Ints(t, "shape"); // rows, columns, k
        var indices = new int[ts[0] * ts[2]];
        var values = new float[ts[0] * ts[2]];
        TopK.SelectRows(Floats(t, "x"), ts[1], ts[2], indices, values);
        Assert.Equal(Ints(t, "indices"), indices);
        Assert.Equal(Floats(t, "y"), values);
    }
}
