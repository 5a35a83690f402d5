using System.Runtime.Intrinsics;

namespace TaH.Kernels.Cpu;

/// <summary>
/// fp16 bit patterns to fp32 in SIMD registers (.NET exposes no F16C conversion): the magnitude
/// bits shifted into place are a float 2^112 too small, subnormals included, so one multiply
/// rescales them exactly. Finite values only (the kernels' scales are).
/// </summary>
internal static class HalfBits
{
    private const float Rescale = 5.192296858534828e33f; // 2^112

    public static Vector512<float> ToSingle(Vector512<uint> bits)
    {
        var magnitude = ((bits & Vector512.Create(0x7FFFu)) << 13).AsSingle() * Vector512.Create(Rescale);
        return (magnitude.AsUInt32() | ((bits & Vector512.Create(0x8000u)) << 16)).AsSingle();
    }

    public static Vector256<float> ToSingle(Vector256<uint> bits)
    {
        var magnitude = ((bits & Vector256.Create(0x7FFFu)) << 13).AsSingle() * Vector256.Create(Rescale);
        return (magnitude.AsUInt32() | ((bits & Vector256.Create(0x8000u)) << 16)).AsSingle();
    }
}
