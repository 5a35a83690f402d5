using System.IO.Compression;
using System.Runtime.InteropServices;
using TorchSharp;

namespace TaH.Engine.Checkpoints;

/// <summary>
/// Reads files in the format of PyTorch's torch.save (a zip holding a pickle and raw
/// little-endian storages), without Python. See <see cref="PickleReader"/> for the object model;
/// tensors come back as new contiguous CPU tensors in their stored dtype, owned by the caller.
/// (TaH.Checkpoints.Writing's TorchCheckpointWriter writes them.)
/// </summary>
public static class TorchCheckpoint
{
    /// <summary>
    /// Loads a torch.save file. Tensors are rebuilt from their storage, offset, size and stride
    /// (requires_grad and backward hooks are dropped); anything malformed throws <see cref="CheckpointException"/>.
    /// </summary>
    public static object? Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new CheckpointException(path, Directory.Exists(path) ? "is a directory, not a checkpoint file" : "file not found");
        }

        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, $"cannot be opened: {ex.Message}", ex);
        }

        using (stream)
        {
            ZipArchive zip;
            try
            {
                zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
            }
            catch (Exception ex) when (ex is InvalidDataException or IOException or ArgumentException)
            {
                throw new CheckpointException(path, DescribeNonZip(stream, ex), ex);
            }

            using (zip)
            {
                return new TorchCheckpointLoader(path, zip).Load();
            }
        }
    }

    private static string DescribeNonZip(FileStream stream, Exception ex)
    {
        try
        {
            // The legacy (before PyTorch 1.6) format is a bare pickle stream: PROTO 2.
            Span<byte> start = stackalloc byte[2];
            stream.Position = 0;
            if (stream.Read(start) == 2 && start[0] == 0x80 && start[1] == 0x02)
            {
                return "was written in the legacy torch.save format (before PyTorch 1.6), which is not supported; re-save it with a recent PyTorch";
            }
        }
        catch (IOException)
        {
            // Fall through to the general message.
        }

        return $"is not a readable zip archive, so not a torch.save checkpoint; it may be truncated or corrupt ({ex.Message})";
    }
}

/// <summary>One Load: finds the records, unpickles, and rebuilds tensors from their storages.</summary>
internal sealed class TorchCheckpointLoader(string path, ZipArchive zip)
{
    private readonly Dictionary<string, StorageRef> _storages = new(StringComparer.Ordinal);
    private readonly List<torch.Tensor> _results = [];
    private string _prefix = "";
    private string _pickleName = "data.pkl";

    internal object? Load()
    {
        try
        {
            var pickle = FindRecords();
            var payload = PickleReader.Load(pickle, path, _pickleName, PersistentLoad, Call);
            payload = ResolveBareStorages(payload, new HashSet<object>(ReferenceEqualityComparer.Instance));
            _results.Clear();
            return payload;
        }
        catch (Exception ex) when (ex is InvalidCastException or ArgumentException or OverflowException
                                       or FormatException or ExternalException)
        {
            throw new CheckpointException(path, $"is corrupt or uses a feature this reader does not support ({ex.Message})", ex);
        }
        finally
        {
            // Tensors handed out were views or copies; the storages themselves are released here,
            // and everything is released when the load failed (_results is emptied on success).
            foreach (var tensor in _results)
            {
                tensor.Dispose();
            }

            foreach (var storage in _storages.Values)
            {
                storage.Data?.Dispose();
            }
        }
    }

    private byte[] FindRecords()
    {
        ZipArchiveEntry? pickleEntry = null;
        foreach (var entry in zip.Entries)
        {
            string name = entry.FullName;
            if (name == "data.pkl" || (name.EndsWith("/data.pkl", StringComparison.Ordinal) && name.IndexOf('/') == name.Length - 9))
            {
                pickleEntry = entry;
                break;
            }
        }

        if (pickleEntry is null)
        {
            throw new CheckpointException(path, "is a zip archive without a data.pkl record, so not a torch.save checkpoint");
        }

        _pickleName = pickleEntry.FullName;
        _prefix = _pickleName[..^"data.pkl".Length];
        if (zip.GetEntry(_prefix + "constants.pkl") is not null)
        {
            throw new CheckpointException(path, "is a TorchScript archive (torch.jit.save), not a torch.save checkpoint");
        }

        if (zip.GetEntry(_prefix + "byteorder") is { } byteOrderEntry)
        {
            string byteOrder = System.Text.Encoding.ASCII.GetString(ReadRecord(byteOrderEntry)).Trim();
            if (byteOrder != "little")
            {
                throw new CheckpointException(path, $"stores tensors in '{byteOrder}' byte order; only 'little' is supported");
            }
        }

        return ReadRecord(pickleEntry);
    }

    private byte[] ReadRecord(ZipArchiveEntry entry)
    {
        if (entry.Length > Array.MaxLength)
        {
            throw new CheckpointException(path, $"record '{entry.FullName}' is too large ({entry.Length} bytes)");
        }

        try
        {
            var bytes = new byte[entry.Length];
            using (var stream = entry.Open())
            {
                stream.ReadExactly(bytes);
            }

            CheckCrc(entry, Crc32.Append(0, bytes));
            return bytes;
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException)
        {
            throw new CheckpointException(path, $"record '{entry.FullName}' cannot be read; the file is truncated or corrupt ({ex.Message})", ex);
        }
    }

    private StorageRef PersistentLoad(object? pid)
    {
        if (pid is not object?[] { Length: 5 } parts || parts[0] is not "storage")
        {
            throw new CheckpointException(path, $"{_pickleName} refers to a persistent object that is not a tensor storage");
        }

        if (parts[1] is not PyGlobal storageClass || !TorchStorageTypes.TryParse(storageClass, out var dtype, out int elementSize))
        {
            throw new CheckpointException(path, $"{_pickleName} uses storage type {parts[1]}, which is not supported");
        }

        string key = parts[2] switch
        {
            string s => s,
            long l => l.ToString(System.Globalization.CultureInfo.InvariantCulture),
            _ => throw new CheckpointException(path, $"{_pickleName} has a storage reference without a key"),
        };
        if (parts[4] is not long numel || numel < 0)
        {
            throw new CheckpointException(path, $"{_pickleName} gives storage '{key}' no valid element count");
        }

        if (_storages.TryGetValue(key, out var existing))
        {
            if (existing.Type != dtype || existing.Numel != numel)
            {
                throw new CheckpointException(path,
                    $"{_pickleName} uses storage '{key}' both as {existing.Numel} x {existing.Type} and as {numel} x {dtype}, which is not supported");
            }

            return existing;
        }

        var storage = new StorageRef(key, dtype, elementSize, numel);
        _storages.Add(key, storage);
        return storage;
    }

    private bool Call(PyGlobal callable, object?[] args, out object? result)
    {
        switch (callable.Module, callable.Name)
        {
            case ("torch._utils", "_rebuild_tensor_v2") when args.Length >= 4:
            case ("torch._utils", "_rebuild_tensor") when args.Length >= 4:
                result = RebuildTensor(callable, args[0], args[1], args[2], args[3]);
                return true;
            case ("torch._utils", "_rebuild_parameter" or "_rebuild_parameter_with_state") when args.Length >= 1:
                result = args[0] as torch.Tensor
                    ?? throw new CheckpointException(path, $"{_pickleName} rebuilds a parameter from something that is not a tensor");
                return true;
            case ("torch._tensor", "_rebuild_from_type_v2") when args is [PyGlobal inner, _, object?[] innerArgs, ..]:
                // A tensor subclass (e.g. Parameter): rebuild the plain tensor it wraps.
                return Call(inner, innerArgs, out result) && result is torch.Tensor;
            default:
                result = null;
                return false;
        }
    }

    private torch.Tensor RebuildTensor(PyGlobal callable, object? storageArg, object? offsetArg, object? sizeArg, object? strideArg)
    {
        if (storageArg is not StorageRef storage)
        {
            throw new CheckpointException(path, $"{_pickleName} calls {callable} without a tensor storage");
        }

        long offset = offsetArg is long o && o >= 0
            ? o
            : throw new CheckpointException(path, $"{_pickleName} gives a tensor of storage '{storage.Key}' an invalid storage offset");
        long[] size = ToLongs(sizeArg, "size", storage.Key);
        long[] stride = ToLongs(strideArg, "stride", storage.Key);
        if (size.Length != stride.Length)
        {
            throw new CheckpointException(path,
                $"{_pickleName} gives a tensor of storage '{storage.Key}' {size.Length} sizes but {stride.Length} strides");
        }

        long numel = 1;
        long last = offset;
        for (int i = 0; i < size.Length; i++)
        {
            numel = checked(numel * size[i]);
            last = checked(last + (size[i] == 0 ? 0 : (size[i] - 1) * stride[i]));
        }

        var result = numel == 0 ? torch.empty(size, storage.Type) : null;
        if (result is null)
        {
            if (last >= storage.Numel)
            {
                throw new CheckpointException(path,
                    $"a tensor of shape [{string.Join(", ", size)}] (stride [{string.Join(", ", stride)}], offset {offset}) needs {last + 1} elements, but its storage '{storage.Key}' has only {storage.Numel}");
            }

            var data = Materialize(storage);
            if (!storage.HandedOut && offset == 0 && numel == storage.Numel && IsContiguous(size, stride))
            {
                // The tensor is the whole storage: share it rather than copy.
                result = data.view(size);
                storage.HandedOut = true;
            }
            else
            {
                using var view = data.as_strided(size, stride, offset);
                result = view.is_contiguous() ? view.clone() : view.contiguous();
            }
        }

        _results.Add(result);
        return result;
    }

    private torch.Tensor Materialize(StorageRef storage)
    {
        if (storage.Data is not null)
        {
            return storage.Data;
        }

        string recordName = $"{_prefix}data/{storage.Key}";
        var entry = zip.GetEntry(recordName)
            ?? throw new CheckpointException(path, $"storage record '{recordName}' is missing; the file is truncated or corrupt");
        long needed = checked(storage.Numel * storage.ElementSize);
        if (entry.Length < needed)
        {
            throw new CheckpointException(path,
                $"storage record '{recordName}' holds {entry.Length} bytes, but the checkpoint says it has {storage.Numel} elements of {storage.Type} ({needed} bytes)");
        }

        storage.Data = torch.empty(new long[] { storage.Numel }, storage.Type);
        try
        {
            using (var stream = entry.Open())
            {
                TensorBytes.ReadFromStream(stream, storage.Data);
            }

            // Torch writes exactly the storage's bytes; only then does the checksum cover what was read.
            if (entry.Length == needed)
            {
                uint crc = 0;
                TensorBytes.ForEachChunk(storage.Data, (chunk, _) => crc = Crc32.Append(crc, chunk));
                CheckCrc(entry, crc);
            }
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException)
        {
            throw new CheckpointException(path, $"storage record '{recordName}' cannot be read; the file is truncated or corrupt ({ex.Message})", ex);
        }

        return storage.Data;
    }

    // System.IO.Compression (before .NET 11) does not check entry checksums; a damaged record must not load silently.
    private void CheckCrc(ZipArchiveEntry entry, uint crc)
    {
        if (crc != entry.Crc32)
        {
            throw new CheckpointException(path,
                $"record '{entry.FullName}' is damaged: its CRC-32 is {crc:x8}, but the archive says {entry.Crc32:x8}");
        }
    }

    private long[] ToLongs(object? value, string what, string key)
    {
        IReadOnlyList<object?>? items = value switch
        {
            object?[] tuple => tuple,
            List<object?> list => list,
            _ => null,
        };
        if (items is null || items.Any(i => i is not long l || l < 0))
        {
            throw new CheckpointException(path,
                $"{_pickleName} gives a tensor of storage '{key}' a {what} that is not a tuple of non-negative integers");
        }

        return items.Select(i => (long)i!).ToArray();
    }

    private static bool IsContiguous(long[] size, long[] stride)
    {
        long expected = 1;
        for (int i = size.Length - 1; i >= 0; i--)
        {
            if (size[i] != 1 && stride[i] != expected)
            {
                return false;
            }

            expected *= size[i];
        }

        return true;
    }

    /// <summary>A storage that is not inside a tensor is returned as a 1-D tensor of its elements.</summary>
    private object? ResolveBareStorages(object? value, HashSet<object> visited)
    {
        switch (value)
        {
            case StorageRef storage:
                var data = Materialize(storage);
                var tensor = storage.HandedOut ? data.clone() : data.view(-1);
                storage.HandedOut = true;
                _results.Add(tensor);
                return tensor;
            case null or string or torch.Tensor:
                return value;
        }

        if (!visited.Add(value))
        {
            return value;
        }

        switch (value)
        {
            case object?[] tuple:
                for (int i = 0; i < tuple.Length; i++)
                {
                    tuple[i] = ResolveBareStorages(tuple[i], visited);
                }

                break;
            case List<object?> list:
                for (int i = 0; i < list.Count; i++)
                {
                    list[i] = ResolveBareStorages(list[i], visited);
                }

                break;
            case PyDict dict:
                foreach (var key in dict.Keys.ToList())
                {
                    dict[key] = ResolveBareStorages(dict[key], visited);
                }

                dict.Attributes = (PyDict?)ResolveBareStorages(dict.Attributes, visited);
                break;
            case PyObject obj:
                ResolveBareStorages(obj.Args, visited);
                ResolveBareStorages(obj.ListItems, visited);
                ResolveBareStorages(obj.DictItems, visited);
                obj.State = ResolveBareStorages(obj.State, visited);
                break;
        }

        return value;
    }

    private sealed class StorageRef(string key, torch.ScalarType type, int elementSize, long numel)
    {
        public string Key { get; } = key;

        public torch.ScalarType Type { get; } = type;

        public int ElementSize { get; } = elementSize;

        public long Numel { get; } = numel;

        public torch.Tensor? Data { get; set; }

        public bool HandedOut { get; set; }
    }
}
