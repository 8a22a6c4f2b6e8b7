using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MoeCompiler.Runtime.Kernels;

/// <summary>Vectorised widening of stored weight formats to f32.</summary>
internal static unsafe class Widen
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void BF16ToF32(KernelIsa isa, ushort* source, float* destination, int count)
    {
        int i = 0;
        if (isa == KernelIsa.Avx512)
        {
            for (; i + 16 <= count; i += 16)
            {
                var wide = Avx512F.ConvertToVector512UInt32(Vector256.Load(source + i));
                Vector512.Store(Vector512.ShiftLeft(wide, 16).AsSingle(), destination + i);
            }
        }
        else if (isa == KernelIsa.Avx2)
        {
            for (; i + 8 <= count; i += 8)
            {
                var wide = Avx2.ConvertToVector256Int32(Vector128.Load(source + i));
                Vector256.Store(Vector256.ShiftLeft(wide, 16).AsSingle(), destination + i);
            }
        }
        for (; i < count; i++) destination[i] = NumberFormats.BF16ToFloat(source[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void I8ToF32(KernelIsa isa, sbyte* source, float scale, float* destination, int count)
    {
        int i = 0;
        if (isa == KernelIsa.Avx512)
        {
            var s = Vector512.Create(scale);
            for (; i + 16 <= count; i += 16)
            {
                var wide = Avx512F.ConvertToVector512Int32(Vector128.Load(source + i));
                Vector512.Store(Avx512F.ConvertToVector512Single(wide) * s, destination + i);
            }
        }
        else if (isa == KernelIsa.Avx2)
        {
            var s = Vector256.Create(scale);
            for (; i + 8 <= count; i += 8)
            {
                var wide = Avx2.ConvertToVector256Int32(source + i);
                Vector256.Store(Avx.ConvertToVector256Single(wide) * s, destination + i);
            }
        }
        for (; i < count; i++) destination[i] = source[i] * scale;
    }
}
