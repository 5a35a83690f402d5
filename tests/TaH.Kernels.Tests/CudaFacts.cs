using TaH.Kernels.Cuda;

namespace TaH.Kernels.Tests;

/// <summary>Skips, saying why, where NVRTC cannot be loaded (never a silent pass).</summary>
public sealed class NvrtcFactAttribute : FactAttribute
{
    public NvrtcFactAttribute()
    {
        if (!CudaNative.TryLoadNvrtc(out string? problem))
        {
            Skip = $"NVRTC not available: {problem}";
        }
    }
}

/// <inheritdoc cref="NvrtcFactAttribute"/>
public sealed class NvrtcTheoryAttribute : TheoryAttribute
{
    public NvrtcTheoryAttribute()
    {
        if (!CudaNative.TryLoadNvrtc(out string? problem))
        {
            Skip = $"NVRTC not available: {problem}";
        }
    }
}

/// <summary>Skips, saying why, where no CUDA device is present (CI has none).</summary>
public sealed class GpuFactAttribute : FactAttribute
{
    public GpuFactAttribute()
    {
        if (!CudaDevice.IsAvailable(out string reason))
        {
            Skip = $"needs a CUDA GPU: {reason}";
        }
        else if (!CudaNative.TryLoadNvrtc(out string? problem))
        {
            Skip = $"needs NVRTC: {problem}";
        }
    }
}
