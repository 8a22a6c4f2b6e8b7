using MoeCompiler.Runtime.Threading;

namespace MoeCompiler.Runtime.Kernels;

internal static unsafe partial class Gemm
{
    /// <summary>Per-thread scratch floats for <see cref="RunRowIndependent"/>.</summary>
    public static long RowIndependentScratchFloats(int k) => k + 64;

    /// <summary>
    /// y = x·Wᵀ (+ bias) for any number of rows with the matrix-vector arithmetic: every weight row is streamed once
    /// for all rows of x, and every output element is the same dot product (same order, same rounding) that a
    /// one-row call computes. Batched decode uses it so that a sequence's results do not depend on which other
    /// sequences share the step (the blocked GEMM sums in another order and would change the last bits).
    /// </summary>
    /// <remarks>With <paramref name="integerDot"/> (int8/q4 weights, <see cref="SupportsIntegerDot"/>) every row is
    /// quantised on its own into <paramref name="shared"/> (<see cref="QuantizedActivationBytes"/>), so row i still
    /// equals a one-row call.</remarks>
    public static void RunRowIndependent(WorkerPool pool, float** scratch, KernelIsa isa, float* x, int m, int k, WeightView w, float* bias, float* y,
        float* shared = null, bool integerDot = false, bool vnni = false)
    {
        int n = w.Rows;
        var job = new MatVecJob { X = x, M = m, K = k, N = n, W = w, Bias = bias, Y = y, Scratch = scratch, Isa = isa, RowsPerTask = MatVecTaskRows(w, pool.Threads) };
        if (integerDot && SupportsIntegerDot(w))
        {
            job.Quantized = QuantizeActivations(isa, x, m, k, (byte*)shared);
            job.Vnni = vnni;
        }
        int tasks = (n + job.RowsPerTask - 1) / job.RowsPerTask;
        if (ContiguousMatVecTasks) pool.RunContiguous(tasks, ref job);
        else pool.Run(tasks, ref job);
    }
}
