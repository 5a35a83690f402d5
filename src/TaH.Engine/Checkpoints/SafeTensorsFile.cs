using System.Buffers.Binary;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace TaH.Engine.Checkpoints;

/// <summary>
/// One open .safetensors file: its header is parsed and checked on open, tensors are read on demand
/// straight from the file into the tensor's storage. Loads may run concurrently.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    // The reference (Rust) implementation refuses headers above 100 MB; a bigger one means a corrupt file.
    private const long MaxHeaderBytes = 100_000_000;

    private readonly SafeFileHandle _handle;
    private readonly long _dataStart;
    private readonly Dictionary<string, TensorEntry> _entries;

    private SafeTensorsFile(string path, SafeFileHandle handle, long dataStart, Dictionary<string, TensorEntry> entries,
        IReadOnlyList<string> names, IReadOnlyDictionary<string, string> metadata)
    {
        FilePath = path;
        _handle = handle;
        _dataStart = dataStart;
        _entries = entries;
        Names = names;
        Metadata = metadata;
    }

    public string FilePath { get; }

    public IReadOnlyDictionary<string, TensorEntry> Entries => _entries;

    /// <summary>Tensor names in the order of the header.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The header's "__metadata__" (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path))
        {
            throw new CheckpointException(path, Directory.Exists(path)
                ? "is a directory, not a safetensors file"
                : "file not found");
        }

        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, $"cannot be opened: {ex.Message}", ex);
        }

        try
        {
            var (dataStart, entries, names, metadata) = ReadHeader(path, handle);
            return new SafeTensorsFile(path, handle, dataStart, entries, names, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _entries.ContainsKey(name);

    public TensorEntry Info(string name) =>
        _entries.TryGetValue(name, out var entry)
            ? entry
            : throw new CheckpointException(FilePath, $"has no tensor named '{name}'");

    /// <summary>
    /// Reads a tensor into a new contiguous CPU tensor owned by the caller, converted to
    /// <paramref name="asType"/> when given (e.g. BF16 widened to Float32).
    /// </summary>
    public torch.Tensor Load(string name, torch.ScalarType? asType = null)
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        var entry = Info(name);
        var tensor = torch.empty(entry.Shape.ToArray(), entry.ScalarType);
        try
        {
            TensorBytes.ReadFromFile(_handle, _dataStart + entry.DataBegin, tensor, FilePath);
            if (asType is { } type && type != entry.ScalarType)
            {
                var converted = tensor.to(type);
                tensor.Dispose();
                return converted;
            }

            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    public void Dispose() => _handle.Dispose();

    private static (long DataStart, Dictionary<string, TensorEntry> Entries, List<string> Names,
        Dictionary<string, string> Metadata) ReadHeader(string path, SafeFileHandle handle)
    {
        long fileLength = RandomAccess.GetLength(handle);
        if (fileLength < 8)
        {
            throw new CheckpointException(path,
                $"is too short to be a safetensors file ({fileLength} bytes; it must start with an 8-byte header length)");
        }

        Span<byte> lengthBytes = stackalloc byte[8];
        ReadExactly(path, handle, lengthBytes, 0);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > (ulong)(fileLength - 8))
        {
            throw new CheckpointException(path,
                $"header length {headerLength} goes beyond the end of the file ({fileLength} bytes); the file is truncated or not a safetensors file");
        }

        if (headerLength > MaxHeaderBytes)
        {
            throw new CheckpointException(path, $"header length {headerLength} is implausibly large; the file is corrupt");
        }

        var header = new byte[headerLength];
        ReadExactly(path, handle, header, 8);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        // Writers pad the header with spaces; tolerate NUL padding as well.
        int end = header.Length;
        while (end > 0 && header[end - 1] == 0)
        {
            end--;
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header.AsMemory(0, end));
        }
        catch (Exception ex) when (ex is JsonException or ArgumentException)
        {
            throw new CheckpointException(path, $"header is not valid JSON ({ex.Message})", ex);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointException(path, $"header is not a JSON object (it is a JSON {Describe(root.ValueKind)})");
            }

            var entries = new Dictionary<string, TensorEntry>(StringComparer.Ordinal);
            var names = new List<string>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var property in root.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    ReadMetadata(path, property.Value, metadata);
                    continue;
                }

                if (entries.ContainsKey(property.Name))
                {
                    throw new CheckpointException(path, $"header lists tensor '{property.Name}' twice");
                }

                entries.Add(property.Name, ReadEntry(path, property.Name, property.Value, dataLength));
                names.Add(property.Name);
            }

            return (dataStart, entries, names, metadata);
        }
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return;
        }

        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new CheckpointException(path, "header's __metadata__ is not a JSON object of strings");
        }

        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw new CheckpointException(path,
                    $"header's __metadata__ entry '{item.Name}' is not a string (it is a JSON {Describe(item.Value.ValueKind)})");
            }

            metadata[item.Name] = item.Value.GetString()!;
        }
    }

    private static TensorEntry ReadEntry(string path, string name, JsonElement value, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new CheckpointException(path, $"header entry for tensor '{name}' is not a JSON object");
        }

        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw new CheckpointException(path, $"tensor '{name}' has no \"dtype\" string in the header");
        }

        string dtype = dtypeElement.GetString()!;
        if (!SafeTensorsDTypes.TryParse(dtype, out var scalarType, out int elementSize))
        {
            throw new CheckpointException(path,
                $"tensor '{name}' has dtype '{dtype}', which is not supported (supported: {SafeTensorsDTypes.SupportedList})");
        }

        if (!value.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
        {
            throw new CheckpointException(path, $"tensor '{name}' has no \"shape\" array in the header");
        }

        var shape = new long[shapeElement.GetArrayLength()];
        int i = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long size) || size < 0)
            {
                throw new CheckpointException(path,
                    $"tensor '{name}' has a shape that is not a list of non-negative integers: {shapeElement.GetRawText()}");
            }

            shape[i++] = size;
        }

        if (!value.TryGetProperty("data_offsets", out var offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array)
        {
            throw new CheckpointException(path, $"tensor '{name}' has no \"data_offsets\" array in the header");
        }

        if (offsetsElement.GetArrayLength() != 2
            || !TryGetNonNegative(offsetsElement[0], out long begin)
            || !TryGetNonNegative(offsetsElement[1], out long end)
            || end < begin)
        {
            throw new CheckpointException(path,
                $"tensor '{name}' has data_offsets {offsetsElement.GetRawText()}, which is not a [begin, end] pair with 0 <= begin <= end");
        }

        if (end > dataLength)
        {
            throw new CheckpointException(path,
                $"tensor '{name}' has data_offsets [{begin}, {end}] outside the data area, which is {dataLength} bytes (the file is truncated or corrupt)");
        }

        long needed;
        try
        {
            needed = elementSize;
            foreach (long dim in shape)
            {
                needed = checked(needed * dim);
            }
        }
        catch (OverflowException)
        {
            throw new CheckpointException(path, $"tensor '{name}' has an impossibly large shape [{string.Join(", ", shape)}]");
        }

        if (end - begin != needed)
        {
            throw new CheckpointException(path,
                $"tensor '{name}' has data_offsets [{begin}, {end}] covering {end - begin} bytes, but shape [{string.Join(", ", shape)}] of {dtype} needs {needed} bytes");
        }

        return new TensorEntry(name, dtype, scalarType, shape, begin, end);
    }

    private static bool TryGetNonNegative(JsonElement element, out long value)
    {
        value = 0;
        return element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out value) && value >= 0;
    }

    private static void ReadExactly(string path, SafeFileHandle handle, Span<byte> buffer, long position)
    {
        while (!buffer.IsEmpty)
        {
            int read = RandomAccess.Read(handle, buffer, position);
            if (read == 0)
            {
                throw new CheckpointException(path, $"ends unexpectedly at byte {position} (the file is truncated)");
            }

            buffer = buffer[read..];
            position += read;
        }
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => "value",
    };
}
