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

    /// <summary>One q4 group (16 bytes: column j in the low nibble of byte j, column j + 16 in its high nibble) as 32 f32
    /// values (q − 8) · scale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Q4ToF32(KernelIsa isa, byte* source, float scale, float* destination)
    {
        if (isa == KernelIsa.Avx512)
        {
            Q4Nibbles(source, out var low, out var high);
            var s = Vector512.Create(scale);
            Vector512.Store(Q4Values512(low) * s, destination);
            Vector512.Store(Q4Values512(high) * s, destination + 16);
            return;
        }
        if (isa == KernelIsa.Avx2)
        {
            Q4Nibbles(source, out var low, out var high);
            var s = Vector256.Create(scale);
            var offset = Vector128.Create((sbyte)8);
            var l = low.AsSByte() - offset;
            var h = high.AsSByte() - offset;
            Vector256.Store(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(l)) * s, destination);
            Vector256.Store(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(l, 8))) * s, destination + 8);
            Vector256.Store(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(h)) * s, destination + 16);
            Vector256.Store(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(h, 8))) * s, destination + 24);
            return;
        }
        for (int j = 0; j < 16; j++)
        {
            destination[j] = ((source[j] & 0x0F) - 8) * scale;
            destination[j + 16] = ((source[j] >> 4) - 8) * scale;
        }
    }

    /// <summary>The 16 low nibbles (columns 0–15) and 16 high nibbles (columns 16–31) of a q4 group, as bytes 0–15.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Q4Nibbles(byte* source, out Vector128<byte> low, out Vector128<byte> high)
    {
        var bytes = Vector128.Load(source);
        var mask = Vector128.Create((byte)0x0F);
        low = bytes & mask;
        high = Vector128.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & mask;
    }

    /// <summary>16 nibbles (0–15) as f32 values nibble − 8, by a table lookup instead of convert-and-subtract.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Q4Values512(Vector128<byte> nibbles) =>
        Avx512F.PermuteVar16x32(Q4Table, Avx512F.ConvertToVector512Int32(nibbles));

    private static Vector512<float> Q4Table
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Vector512.Create(-8f, -7f, -6f, -5f, -4f, -3f, -2f, -1f, 0f, 1f, 2f, 3f, 4f, 5f, 6f, 7f);
    }
}
