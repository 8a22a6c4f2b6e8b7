using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using Xunit;

namespace MoeCompiler.Runtime.Tests.Tensors;

/// <summary>
/// A tensor's native memory is freed by its storage's finalizer once nothing references the tensor. A backend
/// operation reads raw pointers, so it must keep its tensor arguments referenced until it is done: here every input is
/// a temporary whose only reference is the argument, while another thread collects garbage, runs finalizers and
/// overwrites freed memory of the same size with NaN. Without the guarantee the operation reads freed memory.
/// The project runs with tiered compilation off: only optimised code ends an argument's lifetime at its last use.
/// </summary>
public sealed class LifetimeTests
{
    private const int Width = 1024, Rows = 64; // 256 KiB per f32 tensor
    private const int Side = 8, Patch = 4;
    private static readonly TimeSpan MinimumTime = TimeSpan.FromMilliseconds(150);

    [Theory]
    [InlineData("Add")]
    [InlineData("Multiply")]
    [InlineData("Scale")]
    [InlineData("Copy")]
    [InlineData("CopyRows")]
    [InlineData("Download")]
    [InlineData("ToFloatArray")]
    [InlineData("GatherRows")]
    [InlineData("ScatterAddRows")]
    [InlineData("Embedding")]
    [InlineData("LayerNorm")]
    [InlineData("RmsNorm")]
    [InlineData("Softmax")]
    [InlineData("Linear")]
    [InlineData("PackedLinear")]
    [InlineData("Attention")]
    [InlineData("PatchEmbed")]
    [InlineData("AvgPool2d")]
    [InlineData("UpsampleBicubic")]
    public void OperationKeepsTemporaryArgumentsAlive(string operation)
    {
        using var backend = new CpuBackend(2);
        var y = Tensor.Allocate(DType.F32, Rows, Width);
        var downloaded = new float[Rows * Width];
        int[] everyRow = Enumerable.Range(0, Rows).ToArray();
        // Each operation on constant temporaries yields 3 in every element (softmax: 1 / Width).
        float expected = 3f;
        Func<float[]> result = () => y.ToFloatArray();
        Action run;
        switch (operation)
        {
            case "Add": run = () => backend.Add(Filled(1f), Filled(2f), y); break;
            case "Multiply": run = () => backend.Multiply(Filled(1.5f), Filled(2f), y); break;
            case "Scale": run = () => backend.Scale(Filled(1.5f), 2f, y); break;
            case "Copy": run = () => backend.Copy(Filled(3f), y); break;
            case "CopyRows": run = () => backend.CopyRows(Filled(3f), 0, y, 0, Rows); break;
            case "Download":
                run = () => backend.Download(Filled(3f), downloaded);
                result = () => downloaded;
                break;
            case "ToFloatArray":
                run = () => Filled(DType.BF16, 3f, Rows, Width).ToFloatArray().CopyTo(downloaded);
                result = () => downloaded;
                break;
            case "GatherRows": run = () => backend.GatherRows(Filled(3f), everyRow, y); break;
            case "ScatterAddRows":
                float[] twice = Enumerable.Repeat(2f, Rows).ToArray();
                run = () =>
                {
                    y.AsFloats().Fill(1f);
                    backend.ScatterAddRows(Filled(1f), everyRow, twice, y);
                };
                break;
            case "Embedding": run = () => backend.Embedding(Filled(DType.BF16, 3f, Rows, Width), everyRow, y); break;
            // A constant row normalises to 0 (LayerNorm) or to ±1 (RmsNorm): the bias or the weight gives the 3.
            case "LayerNorm": run = () => backend.LayerNorm(Filled(5f), Filled(DType.F32, 2f, Width), Filled(DType.F32, 3f, Width), 1e-5f, y); break;
            case "RmsNorm": run = () => backend.RmsNorm(Filled(-2f), Filled(DType.F32, -3f, Width), 0f, y); break;
            case "Softmax":
                run = () => backend.Softmax(Filled(7f), y);
                expected = 1f / Width;
                break;
            // x = 1/512 and w = 0.5: each dot product is 1024 · 0.5 / 512 = 1, plus the bias 2.
            case "Linear": run = () => backend.Linear(Filled(1f / 512), Filled(DType.BF16, 0.5f, Width, Width), Filled(DType.F32, 2f, Width), y); break;
            case "PackedLinear":
                var packed = backend.PrepareLinearWeight(Filled(DType.BF16, 0.5f, Width, Width));
                run = () => backend.Linear(Filled(1f / 512), packed, Filled(DType.F32, 2f, Width), y);
                break;
            // Every value row is 3, so any mix of them is 3.
            case "Attention": run = () => backend.Attention(Filled(0.25f), Filled(-0.5f), Filled(3f), y, 8, 8, Width / 8, causal: true, 0); break;
            case "PatchEmbed":
                {
                    var patches = Tensor.Allocate(DType.F32, Side / Patch * (Side / Patch), Width);
                    // 3 channels · 4 · 4 pixels of 1 times 1/16 = 3.
                    run = () => backend.PatchEmbed(Filled(DType.F32, 1f, 3, Side, Side), Filled(DType.F32, 1f / 16, Width, 3, Patch, Patch), null, Patch, patches);
                    result = () => patches.ToFloatArray();
                    break;
                }
            case "AvgPool2d":
                {
                    var pooled = Tensor.Allocate(DType.F32, Side / 2 * (Side / 2), Width);
                    run = () => backend.AvgPool2d(Filled(DType.F32, 3f, Side * Side, Width), Side, Side, 2, pooled);
                    result = () => pooled.ToFloatArray();
                    break;
                }
            case "UpsampleBicubic":
                {
                    var upsampled = Tensor.Allocate(DType.F32, 16, 2 * Side, 2 * Side);
                    run = () => backend.UpsampleBicubic(Filled(DType.F32, 3f, 16, Side, Side), 2 * Side, 2 * Side, upsampled);
                    result = () => upsampled.ToFloatArray();
                    break;
                }
            default: throw new ArgumentOutOfRangeException(nameof(operation));
        }

        using var collector = new CollectingThread();
        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        for (int iteration = 0; stopwatch.Elapsed < MinimumTime || iteration < 100; iteration++)
        {
            run();
            float[] actual = result();
            for (int i = 0; i < actual.Length; i++)
                if (!(Math.Abs(actual[i] - expected) <= 1e-5f * expected))
                    Assert.Fail($"{operation}, iteration {iteration}: element {i} is {actual[i]}, expected {expected}");
        }
    }

    private static Tensor Filled(float value) => Filled(DType.F32, value, Rows, Width);

    private static Tensor Filled(DType dtype, float value, params int[] shape)
    {
        var tensor = Tensor.Allocate(dtype, shape);
        if (dtype == DType.F32) tensor.AsFloats().Fill(value);
        else tensor.AsSpan<ushort>().Fill(NumberFormats.FloatToBF16(value));
        return tensor;
    }

    /// <summary>Collects and runs finalizers in a loop, and refills freed memory of the sizes the tests use with NaN, so
    /// a freed input is overwritten while an operation may still read it.</summary>
    private sealed class CollectingThread : IDisposable
    {
        private readonly Thread _thread;
        private volatile bool _stop;

        public CollectingThread()
        {
            _thread = new Thread(() =>
            {
                while (!_stop)
                {
                    GC.Collect();
                    GC.WaitForPendingFinalizers();
                    foreach (int floats in new[] { Rows * Width, Width, Width * Width / 2 })
                    {
                        var poison = Tensor.Allocate(DType.F32, floats);
                        poison.AsFloats().Fill(float.NaN);
                        poison.Storage.Dispose();
                    }
                }
            }) { IsBackground = true, Name = "collector" };
            _thread.Start();
        }

        public void Dispose()
        {
            _stop = true;
            _thread.Join();
        }
    }
}
