using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>Vectorised rounding of f32 to a stored format (the KV cache's bf16 rows).</summary>
internal static unsafe class Narrow
{
    /// <summary>Round to nearest even, bit-identical to <see cref="NumberFormats.FloatToBF16"/> (and so to PyTorch's
    /// <c>.to(torch.bfloat16)</c>), NaN kept quiet.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void F32ToBF16(KernelIsa isa, float* source, ushort* destination, long count)
    {
        long i = 0;
        if (isa == KernelIsa.Avx512)
        {
            var bias = Vector512.Create(0x7FFFu);
            var one = Vector512.Create(1u);
            var quiet = Vector512.Create(0x40u);
            for (; i + 16 <= count; i += 16)
            {
                var value = Vector512.Load(source + i);
                var bits = value.AsUInt32();
                var rounded = Vector512.ShiftRightLogical(bits + bias + (Vector512.ShiftRightLogical(bits, 16) & one), 16);
                var nan = Vector512.ShiftRightLogical(bits, 16) | quiet;
                var isNan = ~Vector512.Equals(value, value).AsUInt32();
                Avx512F.ConvertToVector256UInt16(Vector512.ConditionalSelect(isNan, nan, rounded)).Store(destination + i);
            }
        }
        for (; i < count; i++) destination[i] = NumberFormats.FloatToBF16(source[i]);
    }

    /// <summary><see cref="F32ToBF16(KernelIsa, float*, ushort*, long)"/> on the best instruction set of this machine.</summary>
    public static void F32ToBF16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination too short", nameof(destination));
        fixed (float* s = source)
        fixed (ushort* d = destination)
            F32ToBF16(KernelIsaSupport.Best, s, d, source.Length);
    }
}
