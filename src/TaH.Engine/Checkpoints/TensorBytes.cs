using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace TaH.Engine.Checkpoints;

/// <summary>Receives one slice of a tensor's bytes and where that slice starts within the tensor.</summary>
internal delegate void TensorChunkAction(Span<byte> chunk, long offset);

/// <summary>
/// Moves raw bytes from files into the storage of contiguous CPU tensors without an intermediate
/// managed copy (and walks a tensor's bytes in slices, for checksums and writers).
/// </summary>
internal static class TensorBytes
{
    // Tensor.bytes is a Span, so it can cover at most int.MaxValue bytes; bigger tensors go in slices.
    internal const int DefaultChunkBytes = 1 << 30;

    /// <summary>Calls <paramref name="action"/> for consecutive slices of a contiguous CPU tensor.</summary>
    internal static void ForEachChunk(torch.Tensor tensor, TensorChunkAction action, int chunkBytes = DefaultChunkBytes)
    {
        long elementSize = tensor.ElementSize;
        long count = tensor.NumberOfElements;
        long total = count * elementSize;
        if (total == 0)
        {
            return;
        }

        if (total <= chunkBytes)
        {
            action(tensor.bytes, 0);
            return;
        }

        long perChunk = Math.Max(1, chunkBytes / elementSize);
        using var flat = tensor.view(-1);
        for (long start = 0; start < count; start += perChunk)
        {
            using var slice = flat.narrow(0, start, Math.Min(perChunk, count - start));
            action(slice.bytes, start * elementSize);
        }
    }

    /// <summary>Fills the tensor from <paramref name="file"/> starting at <paramref name="fileOffset"/>.</summary>
    internal static void ReadFromFile(SafeFileHandle file, long fileOffset, torch.Tensor tensor, string path,
        int chunkBytes = DefaultChunkBytes)
    {
        ForEachChunk(tensor, (chunk, offset) =>
        {
            long position = fileOffset + offset;
            while (!chunk.IsEmpty)
            {
                int read = RandomAccess.Read(file, chunk, position);
                if (read == 0)
                {
                    throw new CheckpointException(path,
                        $"ends unexpectedly at byte {position} while reading tensor data (the file is truncated)");
                }

                chunk = chunk[read..];
                position += read;
            }
        }, chunkBytes);
    }

    /// <summary>Fills the tensor from a stream; throws <see cref="EndOfStreamException"/> if it runs short.</summary>
    internal static void ReadFromStream(Stream stream, torch.Tensor tensor, int chunkBytes = DefaultChunkBytes) =>
        ForEachChunk(tensor, (chunk, _) => stream.ReadExactly(chunk), chunkBytes);
}
