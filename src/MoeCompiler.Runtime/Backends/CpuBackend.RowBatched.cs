using MoeCompiler.Runtime.Kernels;
using MoeCompiler.Runtime.Tensors;

namespace MoeCompiler.Runtime.Backends;

public sealed unsafe partial class CpuBackend
{
    /// <summary>
    /// <see cref="Linear"/> with the one-row (matrix-vector) arithmetic for every row, each weight row streamed once
    /// for all of them: row i of y is bit-identical to <see cref="Linear"/> on row i alone, for every weight dtype.
    /// </summary>
    public void LinearRows(Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        var (m, k, n) = CheckLinear(x, weight, y);
        // Rows that Linear itself runs as a matrix-vector product, and degenerate shapes, need nothing else.
        if (m <= Gemm.MatVecMaxRows || n == 0 || k == 0)
        {
            Linear(x, weight, bias, y);
            return;
        }
        ReadOnlySpan<float> b = BiasOrEmpty(bias, n);
        lock (_gate)
        {
            fixed (float* biasPointer = b)
            {
                var view = weight.Storage is PackedWeightStorage packed && packed.Covers(weight) ? new WeightView(weight, packed.Packed) : new WeightView(weight);
                bool integer = IntegerDotDecode && Gemm.SupportsIntegerDot(view);
                float* shared = integer ? _scratch.Shared((Gemm.QuantizedActivationBytes(m, k) + 3) / 4) : null;
                Gemm.RunRowIndependent(_pool, _scratch.Ensure(Gemm.RowIndependentScratchFloats(k)), _isa, (float*)x.Data, m, k,
                    view, b.IsEmpty ? null : biasPointer, (float*)y.Data, shared, integer, Vnni);
            }
        }
        KeepAlive(x, weight, bias, y);
    }

    /// <summary>The argument checks <see cref="Linear"/> and <see cref="LinearRows"/> share: f32 activations, a host
    /// weight [out, in] (int8 layout valid), matching shapes, a writable output apart from the input.</summary>
    /// <returns>Rows m, input features k, output features n.</returns>
    private static (int M, int K, int N) CheckLinear(Tensor x, Tensor weight, Tensor y)
    {
        RequireF32(x, nameof(x));
        RequireF32(y, nameof(y));
        RequireHost(weight);
        if (weight.Rank != 2) throw new ArgumentException($"Linear weight {weight} must be [out, in]");
        Int8Quantization.Validate(weight);
        int m = x.Rows, k = x.Columns, n = weight.Dim(0);
        if (weight.Dim(1) != k) throw new ArgumentException($"Linear: input {x} does not match weight {weight}");
        if (y.Rows != m || y.Columns != n) throw new ArgumentException($"Linear: output {y} should be [{m}, {n}]");
        RequireWritable(y);
        RequireDisjoint(x, y, "Linear");
        return (m, k, n);
    }
}
