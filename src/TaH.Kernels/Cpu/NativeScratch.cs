using System.Runtime.InteropServices;

namespace TaH.Kernels.Cpu;

/// <summary>
/// A 64-byte aligned native float buffer that grows (at least doubling) and is kept between calls:
/// the per-thread scratch of the CPU kernels, so a call allocates nothing once warm.
/// </summary>
public sealed unsafe class NativeScratch
{
    private float* _buffer;
    private long _length;

    ~NativeScratch()
    {
        NativeMemory.AlignedFree(_buffer);
    }

    /// <summary>At least <paramref name="floats"/> floats; earlier contents are not kept when it grows.</summary>
    public float* Reserve(long floats)
    {
        if (floats > _length)
        {
            long length = Math.Max(floats, _length * 2);
            NativeMemory.AlignedFree(_buffer);
            _buffer = (float*)NativeMemory.AlignedAlloc((nuint)(length * sizeof(float)), 64);
            _length = length;
        }

        return _buffer;
    }
}
