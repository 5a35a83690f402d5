using TorchSharp;

namespace TaH.Kernels.Cuda;

/// <summary>Bridges TorchSharp CUDA tensors to the kernels: device pointers, dtypes, the device.</summary>
public static class TorchCuda
{
    /// <summary>The device pointer of a contiguous CUDA tensor (its storage offset included).</summary>
    public static IntPtr Pointer(torch.Tensor tensor, string name = "tensor")
    {
        if (tensor.device_type != DeviceType.CUDA)
        {
            throw new ArgumentException($"{name} must be on a CUDA device (is on {tensor.device})", nameof(tensor));
        }

        if (!tensor.is_contiguous())
        {
            throw new ArgumentException($"{name} must be contiguous", nameof(tensor));
        }

        return CudaNative.THSTensor_data(tensor.Handle);
    }

    /// <summary>The kernels' name of a 16-bit dtype.</summary>
    public static string KernelDType(torch.ScalarType type) => type switch
    {
        torch.ScalarType.BFloat16 => "bf16",
        torch.ScalarType.Float16 => "fp16",
        _ => throw new ArgumentException($"the CUDA kernels run in bf16 or fp16, not {type}", nameof(type)),
    };

    public static CudaDevice Device(torch.Device device) => CudaDevice.Get(Math.Max(0, device.index));
}
