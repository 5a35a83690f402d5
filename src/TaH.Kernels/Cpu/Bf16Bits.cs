using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace TaH.Kernels.Cpu;

/// <summary>bf16 bit patterns to fp32: the upper half of a float, so widening is a shift and exact.</summary>
internal static unsafe class Bf16Bits
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Widen512(ushort* p) => Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load(p)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen256(ushort* p) => Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Vector128.Load(p)).AsUInt32(), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);
}
