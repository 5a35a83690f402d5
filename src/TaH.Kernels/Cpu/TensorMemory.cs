using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Kernels.Cpu;

/// <summary>Raw access to a contiguous CPU tensor's elements, for kernels that read and write them in place.</summary>
public static unsafe class TensorMemory
{
    /// <summary>The first element; the tensor must outlive every use of the pointer.</summary>
    public static T* Pointer<T>(Tensor tensor)
        where T : unmanaged
    {
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
        {
            throw new ArgumentException($"expected a contiguous CPU tensor (got {tensor.device}, contiguous {tensor.is_contiguous()})", nameof(tensor));
        }

        return (T*)Cuda.CudaNative.THSTensor_data(tensor.Handle);
    }
}
