using MoeCompiler.Runtime.Backends;
using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;
using Xunit;
using static MoeCompiler.Runtime.Tests.Kernels.KernelTestUtil;

namespace MoeCompiler.Runtime.Tests.Kernels;

/// <summary>
/// Decode's matrix-vector products split their weight rows into tasks by bytes (<see cref="Gemm.MatVecTaskBytes"/>)
/// and claim them in the pool's contiguous order. Neither may change a result: every output element is one task's,
/// computed alone.
/// </summary>
public sealed class MatVecTaskOrderTests
{
    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var kind in new[] { "bf16", "int8", "q4" })
            foreach (int m in new[] { 1, 2, 4 })
                data.Add(kind, m);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ResultsDoNotDependOnTaskSizeOrOrder(string kind, int m)
    {
        var random = new Random(m * 31 + kind.Length);
        const int rows = 517, columns = 640; // rows not a multiple of any task size below
        var f32 = RandomF32(random, 0.1f, rows, columns);
        var x = RandomF32(random, 1f, m, columns);
        var bias = RandomF32(random, 1f, rows);
        var weight = kind switch
        {
            "int8" => WeightQuantizer.Quantize(f32, QuantizationType.Int8),
            "q4" => WeightQuantizer.Quantize(f32, QuantizationType.Q4),
            _ => ToBF16(f32),
        };
        (bool Contiguous, int RowsPerTask, int TaskBytes)[] variants =
            [(false, 32, 0), (false, 1, 0), (true, 1, 0), (true, 7, 0), (true, 0, 1), (true, 0, 1 << 30)];
        Tensor? expected = null;
        try
        {
            foreach (int threads in new[] { 1, 2, 3 })
            {
                using var backend = new CpuBackend(threads);
                var prepared = backend.PrepareLinearWeight(weight);
                foreach (var (contiguous, rowsPerTask, taskBytes) in variants.Prepend((true, 0, 0)))
                {
                    Gemm.ContiguousMatVecTasks = contiguous;
                    Gemm.MatVecRowsPerTask = rowsPerTask;
                    Gemm.MatVecTaskBytes = taskBytes > 0 ? taskBytes : 256 * 1024;
                    var y = Poisoned(m, rows);
                    backend.LinearRows(x, prepared, bias, y);
                    if (expected is null) expected = y;
                    else AssertBitwiseEqual(expected, y, $"{kind} m={m} threads={threads} contiguous={contiguous} rows/task={rowsPerTask} bytes/task={taskBytes}");
                }
            }
        }
        finally
        {
            Gemm.ContiguousMatVecTasks = true;
            Gemm.MatVecRowsPerTask = 0;
            Gemm.MatVecTaskBytes = 256 * 1024;
        }
    }

    [Fact]
    public void TaskRowsFollowTheBytesPerRowAndLeaveEveryThreadAShare()
    {
        var random = new Random(5);
        var q4 = WeightQuantizer.Quantize(RandomF32(random, 0.1f, 2048, 2048), QuantizationType.Q4);
        var int8 = WeightQuantizer.Quantize(RandomF32(random, 0.1f, 2048, 2048), QuantizationType.Int8);
        var small = WeightQuantizer.Quantize(RandomF32(random, 0.1f, 64, 2048), QuantizationType.Int8);
        // q4 row: 1024 bytes of nibbles + 64 bf16 scales = 1152 bytes; int8 row: 2048 + 128 = 2176.
        Assert.Equal(1152, new WeightView(q4).RowBytes);
        Assert.Equal(2176, new WeightView(int8).RowBytes);
        Assert.Equal(256 * 1024 / 1152, Gemm.MatVecTaskRows(new WeightView(q4), threads: 2));
        Assert.Equal(256 * 1024 / 2176, Gemm.MatVecTaskRows(new WeightView(int8), threads: 2));
        // 64 rows on 2 threads: at most 64 / (2 · 2) = 16 rows per task, whatever the bytes say.
        Assert.Equal(16, Gemm.MatVecTaskRows(new WeightView(small), threads: 2));
        Assert.Equal(8, Gemm.MatVecTaskRows(new WeightView(small), threads: 4));
    }

    private static Tensor ToBF16(Tensor f32)
    {
        var t = Tensor.Allocate(DType.BF16, f32.Rows, f32.Columns);
        var source = f32.AsSpan<float>();
        var target = t.AsSpan<ushort>();
        for (int i = 0; i < source.Length; i++) target[i] = NumberFormats.FloatToBF16(source[i]);
        return t;
    }
}
