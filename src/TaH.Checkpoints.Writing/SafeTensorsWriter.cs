using System.Buffers.Binary;
using System.Text.Json;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Checkpoints.Writing;

/// <summary>Writes tensors in the safetensors format, as one file or as Hugging Face shards plus an index.</summary>
public static class SafeTensorsWriter
{
    /// <summary>
    /// Writes one .safetensors file: tensors in the order given and in their own dtype, the header
    /// padded with spaces to a multiple of 8 bytes. The file is replaced atomically.
    /// </summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var list = tensors.ToList();
        CheckNames(list);

        var header = BuildHeader(list, metadata);
        WriteAtomically(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            foreach (var (_, tensor) in list)
            {
                var source = TensorBytesWriter.ContiguousCpu(tensor, out bool owned);
                try
                {
                    TensorBytesWriter.WriteToStream(stream, source);
                }
                finally
                {
                    if (owned)
                    {
                        source.Dispose();
                    }
                }
            }
        });
    }

    /// <summary>
    /// Writes model-0000i-of-0000N.safetensors shards of at most <paramref name="maxShardBytes"/> of
    /// tensor data each (a larger tensor gets a shard of its own) and model.safetensors.index.json.
    /// Returns the shard paths.
    /// </summary>
    public static IReadOnlyList<string> WriteSharded(string directory, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors,
        long maxShardBytes, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        var list = tensors.ToList();
        CheckNames(list);

        var shards = new List<List<KeyValuePair<string, torch.Tensor>>>();
        long current = 0;
        foreach (var item in list)
        {
            long size = ByteLength(item.Value);
            if (shards.Count == 0 || (current + size > maxShardBytes && shards[^1].Count > 0))
            {
                shards.Add([]);
                current = 0;
            }

            shards[^1].Add(item);
            current += size;
        }

        if (shards.Count == 0)
        {
            shards.Add([]);
        }

        try
        {
            Directory.CreateDirectory(directory);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(directory, $"cannot be created: {ex.Message}", ex);
        }

        var paths = new List<string>();
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < shards.Count; i++)
        {
            string fileName = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            string path = Path.Combine(directory, fileName);
            Write(path, shards[i], metadata);
            paths.Add(path);
            foreach (var (name, _) in shards[i])
            {
                weightMap[name] = fileName;
            }
        }

        long totalSize = list.Sum(item => ByteLength(item.Value));
        WriteAtomically(Path.Combine(directory, SafeTensorsCheckpoint.IndexFileName), stream =>
        {
            using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", totalSize);
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (name, file) in weightMap)
            {
                json.WriteString(name, file);
            }

            json.WriteEndObject();
            json.WriteEndObject();
        });
        return paths;
    }

    private static byte[] BuildHeader(List<KeyValuePair<string, torch.Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata)
                {
                    json.WriteString(key, value);
                }

                json.WriteEndObject();
            }

            long offset = 0;
            foreach (var (name, tensor) in tensors)
            {
                if (!SafeTensorsDTypes.TryGetName(tensor.dtype, out string dtype))
                {
                    throw new ArgumentException(
                        $"tensor '{name}' has dtype {tensor.dtype}, which safetensors files cannot hold here (supported: {SafeTensorsDTypes.SupportedList})",
                        nameof(tensors));
                }

                long size = ByteLength(tensor);
                json.WriteStartObject(name);
                json.WriteString("dtype", dtype);
                json.WriteStartArray("shape");
                foreach (long dim in tensor.shape)
                {
                    json.WriteNumberValue(dim);
                }

                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + size);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += size;
            }

            json.WriteEndObject();
        }

        // Pad with spaces so the data area starts 8-byte aligned, as the reference implementation does.
        int padding = (int)((8 - buffer.Length % 8) % 8);
        for (int i = 0; i < padding; i++)
        {
            buffer.WriteByte((byte)' ');
        }

        return buffer.ToArray();
    }

    private static void CheckNames(List<KeyValuePair<string, torch.Tensor>> tensors)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in tensors)
        {
            ArgumentNullException.ThrowIfNull(tensor, nameof(tensors));
            if (name is null or "__metadata__" || !seen.Add(name))
            {
                throw new ArgumentException($"tensor name '{name}' is reserved or given twice", nameof(tensors));
            }
        }
    }

    private static long ByteLength(torch.Tensor tensor) => tensor.NumberOfElements * tensor.ElementSize;

    /// <summary>Writes to a temporary file next to <paramref name="path"/>, then moves it into place.</summary>
    internal static void WriteAtomically(string path, Action<Stream> write)
    {
        string temp = $"{path}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(stream);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new CheckpointException(path, $"cannot be written: {ex.Message}", ex);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The original error matters more than a leftover temporary file.
        }
    }
}
