using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>
/// How cached keys and values are stored. The attention kernel is generic over this so one source serves an f32
/// cache (exact) and a bf16 cache (half the bytes streamed per decode step, widened in registers). Offsets are in
/// elements from a byte pointer so both share one signature.
/// </summary>
internal unsafe interface IKvElement
{
    /// <summary>x · row[0..n) in f32.</summary>
    static abstract float Dot(KernelIsa isa, float* x, byte* data, long offset, int n);

    static abstract float Load(byte* data, long offset);
    static abstract Vector512<float> Load16(byte* data, long offset);
    static abstract Vector256<float> Load8(byte* data, long offset);
}

internal readonly unsafe struct F32Kv : IKvElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(KernelIsa isa, float* x, byte* data, long offset, int n) => Gemm.DotF32(isa, x, (float*)data + offset, n);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(byte* data, long offset) => ((float*)data)[offset];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* data, long offset) => Vector512.Load((float*)data + offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* data, long offset) => Vector256.Load((float*)data + offset);
}

internal readonly unsafe struct BF16Kv : IKvElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(KernelIsa isa, float* x, byte* data, long offset, int n) => Gemm.DotBF16(isa, x, (ushort*)data + offset, n);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(byte* data, long offset) => NumberFormats.BF16ToFloat(((ushort*)data)[offset]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(byte* data, long offset)
        => Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)data + offset)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(byte* data, long offset)
        => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Vector128.Load((ushort*)data + offset)), 16).AsSingle();
}

internal static unsafe class KvElement
{
    /// <summary>y[0..n) += a · row[0..n), row stored as <typeparamref name="T"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddScaled<T>(KernelIsa isa, float a, byte* data, long offset, float* y, int n) where T : struct, IKvElement
    {
        int i = 0;
        if (isa == KernelIsa.Avx512)
        {
            var w = Vector512.Create(a);
            for (; i + 16 <= n; i += 16) Vector512.FusedMultiplyAdd(T.Load16(data, offset + i), w, Vector512.Load(y + i)).Store(y + i);
        }
        else if (isa == KernelIsa.Avx2)
        {
            var w = Vector256.Create(a);
            for (; i + 8 <= n; i += 8) Vector256.FusedMultiplyAdd(T.Load8(data, offset + i), w, Vector256.Load(y + i)).Store(y + i);
        }
        for (; i < n; i++) y[i] = MathF.FusedMultiplyAdd(T.Load(data, offset + i), a, y[i]);
    }
}
