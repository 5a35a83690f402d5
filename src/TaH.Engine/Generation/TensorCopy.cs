using System.Runtime.InteropServices;
using TorchSharp;

namespace TaH.Engine.Generation;

internal static class TensorCopy
{
    /// <summary>
    /// A tensor's values as a new float array, through one block copy of its bytes (an element
    /// accessor would take about ten times longer for a vocabulary-sized row).
    /// </summary>
    public static float[] ToFloats(torch.Tensor tensor)
    {
        using var scope = torch.NewDisposeScope();
        var host = tensor.to(torch.ScalarType.Float32, torch.CPU).contiguous();
        var values = new float[host.numel()];
        MemoryMarshal.Cast<byte, float>(host.bytes).CopyTo(values);
        return values;
    }
}
