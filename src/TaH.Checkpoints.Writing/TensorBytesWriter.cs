using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Checkpoints.Writing;

/// <summary>A tensor's raw bytes out to a stream, without an intermediate managed copy.</summary>
internal static class TensorBytesWriter
{
    internal static void WriteToStream(Stream stream, torch.Tensor tensor, int chunkBytes = TensorBytes.DefaultChunkBytes) =>
        TensorBytes.ForEachChunk(tensor, (chunk, _) => stream.Write(chunk), chunkBytes);

    /// <summary>
    /// Returns a contiguous CPU tensor with the same values: the tensor itself when it already is one,
    /// otherwise a copy that <paramref name="owned"/> says the caller must dispose.
    /// </summary>
    internal static torch.Tensor ContiguousCpu(torch.Tensor tensor, out bool owned)
    {
        owned = false;
        var result = tensor;
        if (result.device_type != DeviceType.CPU)
        {
            result = result.cpu();
            owned = true;
        }

        if (!result.is_contiguous())
        {
            var contiguous = result.contiguous();
            if (owned)
            {
                result.Dispose();
            }

            result = contiguous;
            owned = true;
        }

        return result;
    }
}
