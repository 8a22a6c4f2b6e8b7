using MoeCompiler.Runtime.Tensors;
using Xunit.Abstractions;

namespace MoeCompiler.Cuda.Tests;

/// <summary>Decode steps captured as CUDA graphs give bit-identical results to running them eagerly.</summary>
public sealed class CudaGraphTests(ITestOutputHelper output)
{
    private const int Hidden = 128, Heads = 4, HeadDim = 32, Capacity = 32;

    /// <summary>One decode step without host synchronisation: norm, projection, rotary, cache write, attention, residual.</summary>
    private sealed class Step(CudaBackend gpu, int seed)
    {
        private readonly Tensor _norm = gpu.PrepareWeight(Tensor.FromFloats(TestData.Random(Hidden, seed), Hidden));
        private readonly Tensor _qkv = gpu.PrepareWeight(TestData.HostTensor(TestData.Random(3 * Hidden * Hidden, seed + 1, 0.1f), DType.BF16, 3 * Hidden, Hidden));
        private readonly Tensor _keys = gpu.Allocate(DType.F32, Capacity, Hidden);
        private readonly Tensor _values = gpu.Allocate(DType.F32, Capacity, Hidden);
        public readonly Tensor State = gpu.Allocate(DType.F32, 1, Hidden);

        public void Run(int position)
        {
            var h = gpu.Allocate(DType.F32, 1, Hidden);
            gpu.RmsNorm(State, _norm, 1e-6f, h);
            var qkv = gpu.Allocate(DType.F32, 1, 3 * Hidden);
            gpu.Linear(h, _qkv, null, qkv);
            var q = gpu.Allocate(DType.F32, 1, Hidden);
            var k = gpu.Allocate(DType.F32, 1, Hidden);
            var v = gpu.Allocate(DType.F32, 1, Hidden);
            gpu.Copy(qkv.Reshape(3, Hidden).SliceRows(0, 1), q);
            gpu.Copy(qkv.Reshape(3, Hidden).SliceRows(1, 1), k);
            gpu.Copy(qkv.Reshape(3, Hidden).SliceRows(2, 1), v);
            gpu.Rotary(q, Heads, HeadDim, HeadDim, 10000f, position);
            gpu.Rotary(k, Heads, HeadDim, HeadDim, 10000f, position);
            gpu.CopyRows(k, 0, _keys, position, 1);
            gpu.CopyRows(v, 0, _values, position, 1);
            var y = gpu.Allocate(DType.F32, 1, Hidden);
            gpu.Attention(q, _keys.SliceRows(0, position + 1), _values.SliceRows(0, position + 1), y, Heads, Heads, HeadDim, true, position);
            gpu.Add(State, y, State);
        }
    }

    [CudaFact]
    public void CapturedDecodeStepsMatchEagerStepsBitForBit()
    {
        using var gpu = CudaBackend.Create();
        var eager = new Step(gpu, 1);
        var graphed = new Step(gpu, 1);
        float[] start = TestData.Random(Hidden, 3);
        gpu.Upload(start, eager.State);
        gpu.Upload(start, graphed.State);
        using var graph = new CudaGraphDecode(gpu);
        for (int position = 0; position < 6; position++)
        {
            eager.Run(position);
            int p = position;
            Assert.True(graph.TryRun(() => graphed.Run(p)), graph.DisabledReason);
        }
        var want = new float[Hidden];
        var got = new float[Hidden];
        gpu.Download(eager.State, want);
        gpu.Download(graphed.State, got);
        Assert.Equal(want, got);
        Assert.Equal(6, graph.Launches);
        output.WriteLine($"{graph.Instantiations} instantiations, {graph.Updates} in-place updates for {graph.Launches} launches");
        Assert.True(graph.Instantiations + graph.Updates == 6);
    }

    [CudaFact]
    public void AStepThatSynchronisesIsNotCapturedAndTurnsGraphsOff()
    {
        using var gpu = CudaBackend.Create();
        var x = gpu.Allocate(DType.F32, 4);
        gpu.Upload([1f, 2f, 3f, 4f], x);
        using var graph = new CudaGraphDecode(gpu);
        var host = new float[4];
        bool captured = graph.TryRun(() =>
        {
            gpu.Scale(x, 2f, x);
            gpu.Download(x, host); // host-side routing would do this
        });
        Assert.False(captured);
        Assert.False(graph.Enabled);
        Assert.Contains("graph", graph.DisabledReason);
        Assert.False(gpu.IsCapturing);
        // Nothing of the aborted capture ran; the eager path still works.
        graph.Run(() => gpu.Scale(x, 2f, x));
        gpu.Download(x, host);
        Assert.Equal([2f, 4f, 6f, 8f], host);
    }
}
