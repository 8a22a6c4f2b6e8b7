using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Modules;
using MoeCompiler.Runtime.Tensors;
using Xunit.Abstractions;
using static MoeCompiler.Cuda.Tests.TestData;

namespace MoeCompiler.Cuda.Tests;

/// <summary>
/// Every CudaBackend operation against <see cref="NaiveBackend"/> on the same inputs (weights already rounded to the
/// dtype under test, so both sides see identical weights). Tolerances: f32 paths 1e-4 (f32 sums of ≤ 1000 terms
/// against double sums); GEMMs through cuBLAS with 16-bit weights also round the activations to 16 bits, so
/// they get the bf16 tolerance 2e-2·|y|max + 2e-2.
/// </summary>
public sealed class CudaOpParityTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly CudaBackend _gpu;
    private readonly NaiveBackend _reference = new();

    public CudaOpParityTests(ITestOutputHelper output)
    {
        _output = output;
        // Weights stay in the dtype the test gives them, so both backends compute with identical weights.
        _gpu = CudaBackend.Create(new CudaBackendOptions { MatrixDType = null });
    }

    public void Dispose() => _gpu.Dispose();

    private Tensor Up(float[] values, params int[] shape)
    {
        var t = _gpu.Allocate(DType.F32, shape);
        _gpu.Upload(values, t);
        return t;
    }

    private float[] Down(Tensor t)
    {
        var values = new float[t.Length];
        _gpu.Download(t, values);
        return values;
    }

    [CudaTheory]
    [InlineData(1, 256, DType.BF16)]
    [InlineData(8, 256, DType.BF16)]
    [InlineData(3, 100, DType.BF16)] // K not a multiple of 8: scalar GEMV loads
    [InlineData(9, 256, DType.BF16)] // cuBLAS
    [InlineData(33, 200, DType.BF16)]
    [InlineData(1, 256, DType.F16)]
    [InlineData(40, 256, DType.F16)]
    [InlineData(2, 130, DType.F32)]
    [InlineData(20, 130, DType.F32)]
    public void LinearMatches(int m, int k, DType weightType)
    {
        int n = 72;
        float[] x = Random(m * k, 1), w = Random(n * k, 2, 0.2f), b = Random(n, 3);
        var weight = HostTensor(w, weightType, n, k);
        var bias = Tensor.FromFloats(b, n);
        var expected = Tensor.Allocate(DType.F32, m, n);
        _reference.Linear(Tensor.FromFloats(x, m, k), weight, bias, expected);

        var y = _gpu.Allocate(DType.F32, m, n);
        _gpu.Linear(Up(x, m, k), _gpu.PrepareWeight(weight), _gpu.PrepareWeight(bias), y);
        bool roundsActivations = m > CudaBackend.GemvMaxRows && weightType != DType.F32;
        float[] want = expected.ToFloatArray();
        double atol = roundsActivations ? 2e-2 * MaxAbs(want) + 2e-2 : 1e-4 * Math.Sqrt(k);
        Close(want, Down(y), atol, roundsActivations ? 0 : 1e-4, $"Linear m={m} k={k} {weightType}");
    }

    [CudaFact]
    public void LinearBatchedMatchesPerProblemLinear()
    {
        int batch = 3, m = 12, k = 64, n = 40;
        float[] x = Random(batch * m * k, 4), w = Random(batch * n * k, 5, 0.2f);
        var weights = HostTensor(w, DType.BF16, batch * n, k);
        var y = _gpu.Allocate(DType.F32, batch * m, n);
        _gpu.LinearBatched(Up(x, batch * m, k), _gpu.PrepareWeight(weights), y, batch);
        float[] got = Down(y);
        for (int i = 0; i < batch; i++)
        {
            var expected = Tensor.Allocate(DType.F32, m, n);
            _reference.Linear(Tensor.FromFloats(x.AsSpan(i * m * k, m * k), m, k), weights.SliceRows(i * n, n), null, expected);
            float[] want = expected.ToFloatArray();
            Close(want, got.AsSpan(i * m * n, m * n), 2e-2 * MaxAbs(want) + 2e-2, 0, $"LinearBatched problem {i}");
        }
    }

    [CudaFact]
    public void ElementwiseOperationsMatch()
    {
        const int n = 1000;
        float[] a = Random(n, 6, 4f), b = Random(n, 7, 4f);
        void Check(string what, Action<IBackend, Tensor, Tensor, Tensor> op, double tolerance)
        {
            var want = Tensor.Allocate(DType.F32, n);
            op(_reference, Tensor.FromFloats(a, n), Tensor.FromFloats(b, n), want);
            var got = _gpu.Allocate(DType.F32, n);
            op(_gpu, Up(a, n), Up(b, n), got);
            Close(want.ToFloatArray(), Down(got), tolerance, tolerance, what);
        }
        Check("Add", (be, p, q, y) => be.Add(p, q, y), 1e-6);
        Check("Multiply", (be, p, q, y) => be.Multiply(p, q, y), 1e-6);
        Check("Scale", (be, p, _, y) => be.Scale(p, -0.37f, y), 1e-6);
        Check("SwiGlu", (be, p, q, y) => be.SwiGlu(p, q, y), 2e-6);
        foreach (Activation activation in Enum.GetValues<Activation>())
            Check(activation.ToString(), (be, p, _, y) => be.Activate(p, activation, y), 2e-6);

        // Outputs may alias inputs.
        var x = Up(a, n);
        _gpu.Add(x, Up(b, n), x);
        Close(a.Zip(b, (p, q) => p + q).ToArray(), Down(x), 1e-6, 0, "Add in place");
    }

    [CudaFact]
    public void SoftmaxAndNormsMatch()
    {
        int rows = 7, cols = 1000;
        float[] x = Random(rows * cols, 8, 6f), w = Random(cols, 9), b = Random(cols, 10);
        void Check(string what, Action<IBackend, Tensor, Tensor> op)
        {
            var want = Tensor.Allocate(DType.F32, rows, cols);
            op(_reference, Tensor.FromFloats(x, rows, cols), want);
            var got = _gpu.Allocate(DType.F32, rows, cols);
            op(_gpu, Up(x, rows, cols), got);
            Close(want.ToFloatArray(), Down(got), 1e-5, 1e-4, what);
        }
        Check("Softmax", (be, p, y) => be.Softmax(p, y));
        Check("LayerNorm", (be, p, y) => be.LayerNorm(p, be.PrepareWeight(Tensor.FromFloats(w, cols)), be.PrepareWeight(Tensor.FromFloats(b, cols)), 1e-5f, y));
        Check("LayerNorm without bias", (be, p, y) => be.LayerNorm(p, be.PrepareWeight(Tensor.FromFloats(w, cols)), null, 1e-6f, y));
        Check("RmsNorm", (be, p, y) => be.RmsNorm(p, be.PrepareWeight(Tensor.FromFloats(w, cols)), 1e-6f, y));
        Check("RmsNorm with a bf16 weight", (be, p, y) => be.RmsNorm(p, be.PrepareWeight(HostTensor(w, DType.BF16, cols)), 1e-6f, y));
    }

    [CudaTheory]
    [InlineData(64, 64, 0)]
    [InlineData(64, 32, 1000)]    // partial rotary (Phi-2, StableLM) far into the sequence
    [InlineData(128, 128, 4090)]
    public void RotaryMatches(int headDim, int rotaryDims, int start)
    {
        int rows = 5, heads = 4;
        float[] x = Random(rows * heads * headDim, 11);
        var want = Tensor.FromFloats(x, rows, heads * headDim);
        _reference.Rotary(want, heads, headDim, rotaryDims, 10000f, start);
        var got = Up(x, rows, heads * headDim);
        _gpu.Rotary(got, heads, headDim, rotaryDims, 10000f, start);
        // The angle is formed in f32 (as the reference models do): error grows with the position.
        Close(want.ToFloatArray(), Down(got), 2e-5 + start * 1.5e-7, 0, "Rotary");
    }

    [CudaTheory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    public void EmbeddingGathersExactly(DType dtype)
    {
        int vocab = 50, cols = 24;
        var table = HostTensor(Random(vocab * cols, 12), dtype, vocab, cols);
        int[] ids = [3, 0, 49, 3, 17];
        var want = Tensor.Allocate(DType.F32, ids.Length, cols);
        _reference.Embedding(table, ids, want);
        var got = _gpu.Allocate(DType.F32, ids.Length, cols);
        _gpu.Embedding(_gpu.PrepareWeight(table), ids, got);
        Close(want.ToFloatArray(), Down(got), 0, 0, "Embedding " + dtype);
        Assert.Throws<ArgumentOutOfRangeException>(() => _gpu.Embedding(_gpu.PrepareWeight(table), [50], _gpu.Allocate(DType.F32, 1, cols)));
    }

    [CudaFact]
    public void GatherAndScatterAddRowsMatch()
    {
        int rows = 10, cols = 300;
        float[] source = Random(rows * cols, 13), destination = Random(rows * cols, 14);
        int[] chosen = [7, 2, 2, 9];
        float[] weights = [0.25f, 0.5f, 1.5f, -1f];
        var gathered = Tensor.Allocate(DType.F32, chosen.Length, cols);
        _reference.GatherRows(Tensor.FromFloats(source, rows, cols), chosen, gathered);
        var gpuGathered = _gpu.Allocate(DType.F32, chosen.Length, cols);
        _gpu.GatherRows(Up(source, rows, cols), chosen, gpuGathered);
        Close(gathered.ToFloatArray(), Down(gpuGathered), 0, 0, "GatherRows");

        var want = Tensor.FromFloats(destination, rows, cols);
        _reference.ScatterAddRows(gathered, chosen, weights, want);
        var got = Up(destination, rows, cols);
        _gpu.ScatterAddRows(gpuGathered, chosen, weights, got);
        Close(want.ToFloatArray(), Down(got), 1e-6, 1e-6, "ScatterAddRows (row 2 twice)");
    }

    /// <summary>
    /// Attention against the double-precision reference. With <paramref name="bf16Cache"/> the keys and values are
    /// stored the way a bf16 KV cache stores them (CopyRows from f32 rows into a bf16 device tensor, rounded to nearest
    /// even) and the reference gets the same rounded values.
    /// </summary>
    [CudaTheory]
    [InlineData(37, 37, 8, 2, 64, true, 0, false)]      // causal prefill, grouped-query: tiled kernel, 3 query tiles
    [InlineData(37, 37, 8, 2, 64, true, 0, true)]       // the same over a bf16 cache
    [InlineData(50, 50, 4, 4, 64, false, 0, false)]     // bidirectional vision attention
    [InlineData(20, 150, 2, 1, 80, true, 130, true)]    // a prompt chunk after 130 cached rows, head dim 80 (Phi-2), bf16 cache
    [InlineData(17, 17, 2, 2, 128, true, 0, false)]     // head dim 128: smaller key tiles
    [InlineData(6, 6, 1, 1, 1024, true, 0, false)]      // head dim 1024: the simple rows kernel where the tiles exceed shared memory
    [InlineData(1, 1000, 8, 8, 128, true, 999, false)]  // batch-1 decode: flash-decoding split
    [InlineData(1, 1000, 8, 2, 128, true, 999, true)]   // batch-1 decode over a bf16 cache
    [InlineData(3, 300, 4, 1, 64, true, 297, false)]    // speculative-style rows across a split boundary
    [InlineData(12, 13000, 2, 1, 64, true, 12988, false)] // a long cache: the tiled kernel walks 200 key tiles
    public void AttentionMatches(int tq, int tk, int heads, int kvHeads, int headDim, bool causal, int queryStart, bool bf16Cache)
    {
        float[] q = Random(tq * heads * headDim, 15), k = Random(tk * kvHeads * headDim, 16), v = Random(tk * kvHeads * headDim, 17);
        if (bf16Cache)
        {
            k = HostTensor(k, DType.BF16, k.Length).ToFloatArray();
            v = HostTensor(v, DType.BF16, v.Length).ToFloatArray();
        }
        var want = Tensor.Allocate(DType.F32, tq, heads * headDim);
        _reference.Attention(Tensor.FromFloats(q, tq, heads * headDim), Tensor.FromFloats(k, tk, kvHeads * headDim),
            Tensor.FromFloats(v, tk, kvHeads * headDim), want, heads, kvHeads, headDim, causal, queryStart);
        var got = _gpu.Allocate(DType.F32, tq, heads * headDim);
        Tensor keys = Up(k, tk, kvHeads * headDim), values = Up(v, tk, kvHeads * headDim);
        if (bf16Cache)
        {
            var cachedKeys = _gpu.Allocate(DType.BF16, tk + 5, kvHeads * headDim);
            var cachedValues = _gpu.Allocate(DType.BF16, tk + 5, kvHeads * headDim);
            _gpu.CopyRows(keys, 0, cachedKeys, 0, tk);
            _gpu.CopyRows(values, 0, cachedValues, 0, tk);
            keys = cachedKeys.SliceRows(0, tk);
            values = cachedValues.SliceRows(0, tk);
        }
        _gpu.Attention(Up(q, tq, heads * headDim), keys, values, got, heads, kvHeads, headDim, causal, queryStart);
        Close(want.ToFloatArray(), Down(got), 1e-5, 1e-4, $"Attention {tq}x{tk}");
    }

    /// <summary>CopyRows into a bf16 tensor rounds to nearest even exactly as the host conversion does.</summary>
    [CudaFact]
    public void CopyRowsIntoBf16RoundsToNearestEven()
    {
        float[] values = [1f, 1.00390625f, 1.01171875f, -3.3333333f, 65504f, 1e-30f, float.NaN, float.PositiveInfinity];
        var expected = HostTensor(values, DType.BF16, 2, 4).ToFloatArray();
        var source = Up(values, 2, 4);
        var cache = _gpu.Allocate(DType.BF16, 3, 4);
        _gpu.CopyRows(source, 0, cache, 1, 2);
        var back = _gpu.Allocate(DType.F32, 2, 4);
        _gpu.Copy(cache.SliceRows(1, 2), back);
        var got = Down(back);
        for (int i = 0; i < values.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(got[i]) || (float.IsNaN(expected[i]) && float.IsNaN(got[i])),
                $"value {values[i]}: {got[i]}, expected {expected[i]}");
        Assert.Throws<ArgumentOutOfRangeException>(() => _gpu.CopyRows(source, 0, cache, 2, 2));
    }

    /// <summary>
    /// A whole MoE layer routed on the device (<see cref="IDeviceMoeBackend"/>: routing, capacity, grouping, grouped
    /// expert GEMV, weighted combine) against the same module routed on the host over the reference backend: the same
    /// experts and weights for every token (capacity drops included), outputs within f32 tolerance.
    /// </summary>
    [CudaTheory]
    [InlineData("mixtral", 2, 5, 8, "swiglu")]
    [InlineData("deepspeed", 2, 8, 4, "swiglu")]       // capacity 2 per expert: later tokens are dropped
    [InlineData("deepspeed", 1, 6, 4, "qwen")]         // top-1 with capacity drops
    [InlineData("deepspeed-sampled", 2, 3, 4, "gelu")] // Gumbel-noise second choice drawn on the host, MLP experts with biases
    [InlineData("mixtral", 2, 1, 4, "gelu")]           // batch-1 decode
    public void DeviceMoeLayerMatchesHostRouting(string routing, int k, int tokens, int experts, string expertKind)
    {
        const int width = 48, hidden = 40;
        var options = new MoeOptions(experts, k, routing == "mixtral" ? MoeRoutingKind.Mixtral : MoeRoutingKind.DeepSpeed,
            EvalCapacityFactor: 0.5, MinCapacity: 0, routing == "deepspeed-sampled" ? SecondExpertPolicy.Sampled : SecondExpertPolicy.Deterministic);
        MoeFeedForward<IFeedForward> Build(IBackend b)
        {
            int seed = 200;
            Tensor W(int rows, int cols) => HostTensor(Random(rows * cols, seed++, 0.3f), DType.BF16, rows, cols);
            Tensor Bias(int n) => Tensor.FromFloats(Random(n, seed++, 0.1f), n);
            var router = new Linear(b, HostTensor(Random(experts * width, seed++, 1f), DType.F32, experts, width), null);
            var list = new IFeedForward[experts];
            for (int e = 0; e < experts; e++)
                list[e] = expertKind switch
                {
                    "swiglu" => new SwiGluFeedForward(new Linear(b, W(hidden, width), null), new Linear(b, W(hidden, width), null), new Linear(b, W(width, hidden), null)),
                    "qwen" => new QwenFeedForward(new Linear(b, W(hidden, width), null), new Linear(b, W(hidden, width), null), new Linear(b, W(width, hidden), null)),
                    _ => new GeluFeedForward(new Linear(b, W(hidden, width), Bias(hidden)), new Linear(b, W(width, hidden), Bias(width)), Activation.GeluTanh),
                };
            return new MoeFeedForward<IFeedForward>(router, list, options, RoutingSites.Llm, 0);
        }
        float[] input = Random(tokens * width, 77);
        var hostLayer = Build(_reference);
        var hostRecorder = new RoutingRecorder();
        var hostContext = new ForwardContext(_reference) { Routing = hostRecorder, Random = new Random(9) };
        var want = hostLayer.Forward(hostContext, Tensor.FromFloats(input, tokens, width)).ToFloatArray();

        var deviceLayer = Build(_gpu);
        Assert.True(_gpu.CanRunMoe(tokens, options, MoeExpertWeights.Describe(deviceLayer.Experts)!), "the layer should run on the device");
        var deviceRecorder = new RoutingRecorder();
        var deviceContext = new ForwardContext(_gpu) { Routing = deviceRecorder, Random = new Random(9) };
        var y = deviceLayer.Forward(deviceContext, Up(input, tokens, width));
        Assert.Empty(deviceRecorder.Records); // the routing arrives with the next synchronisation
        var got = Down(y);

        var (a, b) = (hostRecorder.Records.Single(), deviceRecorder.Records.Single());
        Assert.Equal(a.ChosenExperts, b.ChosenExperts);
        Close(a.Weights, b.Weights, 1e-6, 1e-5, "routing weights");
        if (routing.StartsWith("deepspeed", StringComparison.Ordinal) && tokens * k > experts)
            Assert.Contains(-1, a.ChosenExperts); // the case exercises capacity drops
        Close(want, got, 1e-4, 1e-4, $"MoE layer output ({routing}, top-{k}, {expertKind})");
        _output.WriteLine($"experts chosen [{string.Join(",", b.ChosenExperts)}]");
    }

    [CudaTheory]
    [InlineData(14, DType.BF16)] // 6 patches: GEMV path
    [InlineData(7, DType.BF16)]  // 24 patches: cuBLAS path
    [InlineData(7, DType.F32)]
    public void PatchEmbedMatches(int patch, DType weightType)
    {
        int height = 28, width = 42, channels = 16;
        float[] image = Random(3 * height * width, 18), w = Random(channels * 3 * patch * patch, 19, 0.1f), b = Random(channels, 20);
        var weight = HostTensor(w, weightType, channels, 3, patch, patch);
        var count = height / patch * (width / patch);
        var want = Tensor.Allocate(DType.F32, count, channels);
        _reference.PatchEmbed(Tensor.FromFloats(image, 3, height, width), weight, Tensor.FromFloats(b, channels), patch, want);
        var got = _gpu.Allocate(DType.F32, count, channels);
        _gpu.PatchEmbed(Up(image, 3, height, width), _gpu.PrepareWeight(weight), _gpu.PrepareWeight(Tensor.FromFloats(b, channels)), patch, got);
        float[] expected = want.ToFloatArray();
        bool rounds = count > CudaBackend.GemvMaxRows && weightType != DType.F32;
        Close(expected, Down(got), rounds ? 2e-2 * MaxAbs(expected) + 2e-2 : 1e-4, rounds ? 0 : 1e-4, $"PatchEmbed p={patch} {weightType}");
    }

    [CudaFact]
    public void PoolingAndBicubicResizeMatch()
    {
        int h = 24, w = 24, c = 10;
        float[] grid = Random(h * w * c, 21);
        var want = Tensor.Allocate(DType.F32, 36, c);
        _reference.AvgPool2d(Tensor.FromFloats(grid, h * w, c), h, w, 4, want);
        var got = _gpu.Allocate(DType.F32, 36, c);
        _gpu.AvgPool2d(Up(grid, h * w, c), h, w, 4, got);
        Close(want.ToFloatArray(), Down(got), 1e-6, 1e-6, "AvgPool2d");

        foreach (var (inH, inW, outH, outW) in new[] { (24, 24, 37, 50), (40, 40, 17, 17), (9, 9, 9, 9) })
        {
            float[] image = Random(3 * inH * inW, 22);
            var expected = Tensor.Allocate(DType.F32, 3, outH, outW);
            _reference.UpsampleBicubic(Tensor.FromFloats(image, 3, inH, inW), outH, outW, expected);
            var actual = _gpu.Allocate(DType.F32, 3, outH, outW);
            _gpu.UpsampleBicubic(Up(image, 3, inH, inW), outH, outW, actual);
            Close(expected.ToFloatArray(), Down(actual), 1e-5, 1e-5, $"UpsampleBicubic {inH}x{inW}->{outH}x{outW}");
        }
    }

    [CudaTheory]
    [InlineData(8, 2, true)]
    [InlineData(4, 2, false)]
    [InlineData(64, 6, true)]
    public void RouterTopKMatchesSoftmaxThenTopK(int experts, int k, bool renormalize)
    {
        int rows = 20;
        float[] logits = Random(rows * experts, 23, 3f);
        var indices = new int[rows * k];
        var weights = new float[rows * k];
        _gpu.RouterTopK(Up(logits, rows, experts), k, renormalize, indices, weights);
        for (int r = 0; r < rows; r++)
        {
            var row = logits.AsSpan(r * experts, experts).ToArray();
            double max = row.Max(), sum = row.Sum(v => Math.Exp(v - max));
            var order = Enumerable.Range(0, experts).OrderByDescending(e => row[e]).ThenBy(e => e).Take(k).ToArray();
            double chosen = order.Sum(e => Math.Exp(row[e] - max) / sum);
            for (int j = 0; j < k; j++)
            {
                Assert.Equal(order[j], indices[r * k + j]);
                double p = Math.Exp(row[order[j]] - max) / sum / (renormalize ? chosen : 1);
                Assert.True(Math.Abs(p - weights[r * k + j]) < 1e-5, $"row {r} expert {order[j]}: {weights[r * k + j]} vs {p}");
            }
        }
    }

    [CudaFact]
    public void WeightsArePreparedOnceInTheirDeviceDType()
    {
        using var defaults = CudaBackend.Create();
        float[] matrix = Random(6 * 10, 24), vector = Random(10, 25);
        var m = defaults.PrepareWeight(Tensor.FromFloats(matrix, 6, 10));
        var v = defaults.PrepareWeight(Tensor.FromFloats(vector, 10));
        Assert.False(m.IsHost);
        Assert.Equal(DType.BF16, m.DType);
        Assert.Equal(DType.F32, v.DType);
        var back = new float[60];
        defaults.Download(m, back);
        Assert.Equal(matrix.Select(x => HostConversions.Bf16ToFloat(HostConversions.FloatToBf16(x))), back);
        Assert.Same(m, defaults.PrepareWeight(m));

        // Int8 with per-row scales is dequantised, then stored as bf16.
        var int8Storage = new ManagedStorage(6);
        sbyte[] q = [1, -2, 3, 127, -128, 0];
        for (int i = 0; i < 6; i++) int8Storage.Array[i] = (byte)q[i];
        var scales = Tensor.FromFloats([0.5f, 0.25f], 2);
        var int8 = new Tensor(int8Storage, 0, DType.I8, [2, 3], "int8", scales);
        var prepared = defaults.PrepareWeight(int8);
        var dequantised = new float[6];
        defaults.Download(prepared, dequantised);
        Assert.Equal(int8.ToFloatArray(), dequantised);
    }

    [CudaFact]
    public void FreedDeviceTensorsAreReusedWithoutNewDeviceAllocations()
    {
        var first = _gpu.Allocate(DType.F32, 1000);
        nint address = first.Data;
        first.Storage.Dispose();
        int before = _gpu.Allocator.DeviceAllocations;
        var second = _gpu.Allocate(DType.F32, 1000);
        Assert.Equal(address, second.Data);
        Assert.Equal(before, _gpu.Allocator.DeviceAllocations);
        _output.WriteLine($"reserved {_gpu.Allocator.ReservedBytes} bytes, {_gpu.Allocator.CacheHits} cache hits");
    }

    [CudaFact]
    public void HostTensorsAsOutputsAreRefused()
    {
        var ex = Assert.Throws<ArgumentException>(() => _gpu.Add(Up([1f], 1), Up([2f], 1), Tensor.Allocate(DType.F32, 1)));
        Assert.Contains("allocated by this CUDA backend", ex.Message);
    }
}
