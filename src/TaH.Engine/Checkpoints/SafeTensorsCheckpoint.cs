using System.Text.Json;
using TorchSharp;

namespace TaH.Engine.Checkpoints;

/// <summary>
/// The weights of a model directory: one model.safetensors, or the shards that
/// model.safetensors.index.json names. Every shard is opened (and its header checked) once, up front.
/// </summary>
public sealed class SafeTensorsCheckpoint : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafeTensorsFile> _files;
    private readonly Dictionary<string, SafeTensorsFile> _fileOf;
    private readonly List<string> _names;

    private SafeTensorsCheckpoint(string path, List<SafeTensorsFile> files, Dictionary<string, SafeTensorsFile> fileOf,
        List<string> names)
    {
        SourcePath = path;
        _files = files;
        _fileOf = fileOf;
        _names = names;
    }

    /// <summary>The file or directory the checkpoint was opened from.</summary>
    public string SourcePath { get; }

    public IReadOnlyList<SafeTensorsFile> Files => _files;

    /// <summary>Tensor names, in file (or index) order.</summary>
    public IReadOnlyCollection<string> Names => _names;

    public static SafeTensorsCheckpoint OpenDirectory(string directory)
    {
        if (!Directory.Exists(directory))
        {
            throw new CheckpointException(directory, File.Exists(directory)
                ? "is a file, not a model directory"
                : "directory not found");
        }

        string single = Path.Combine(directory, SingleFileName);
        if (File.Exists(single))
        {
            return OpenFile(single);
        }

        string index = Path.Combine(directory, IndexFileName);
        if (File.Exists(index))
        {
            return OpenIndex(index);
        }

        throw new CheckpointException(directory, $"contains neither {SingleFileName} nor {IndexFileName}");
    }

    public static SafeTensorsCheckpoint OpenFile(string path)
    {
        var file = SafeTensorsFile.Open(path);
        var fileOf = file.Names.ToDictionary(n => n, _ => file, StringComparer.Ordinal);
        return new SafeTensorsCheckpoint(path, [file], fileOf, [.. file.Names]);
    }

    /// <summary>Opens the shards named by a Hugging Face model.safetensors.index.json.</summary>
    public static SafeTensorsCheckpoint OpenIndex(string indexPath)
    {
        var weightMap = ReadWeightMap(indexPath);
        string directory = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        var files = new List<SafeTensorsFile>();
        try
        {
            var byShard = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            var fileOf = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            foreach (var (name, shard) in weightMap)
            {
                if (!byShard.TryGetValue(shard, out var file))
                {
                    string shardPath = Path.Combine(directory, shard);
                    if (!File.Exists(shardPath))
                    {
                        throw new CheckpointException(indexPath,
                            $"names shard '{shard}' (for tensor '{name}'), which does not exist in {directory}");
                    }

                    file = SafeTensorsFile.Open(shardPath);
                    files.Add(file);
                    byShard.Add(shard, file);
                }

                if (!file.Contains(name))
                {
                    throw new CheckpointException(indexPath,
                        $"says tensor '{name}' is in shard '{shard}', but that shard has no such tensor");
                }

                fileOf.Add(name, file);
            }

            return new SafeTensorsCheckpoint(indexPath, files, fileOf, [.. weightMap.Select(w => w.Name)]);
        }
        catch
        {
            foreach (var file in files)
            {
                file.Dispose();
            }

            throw;
        }
    }

    public bool Contains(string name) => _fileOf.ContainsKey(name);

    public TensorEntry Info(string name) => FileOf(name).Info(name);

    /// <summary>
    /// Reads a tensor into a new contiguous CPU tensor owned by the caller, converted to
    /// <paramref name="asType"/> when given.
    /// </summary>
    public torch.Tensor Load(string name, torch.ScalarType? asType = null) => FileOf(name).Load(name, asType);

    /// <summary>The file that holds <paramref name="name"/>, for messages about it.</summary>
    public string PathOf(string name) => FileOf(name).FilePath;

    public void Dispose()
    {
        foreach (var file in _files)
        {
            file.Dispose();
        }
    }

    private SafeTensorsFile FileOf(string name) =>
        _fileOf.TryGetValue(name, out var file)
            ? file
            : throw new CheckpointException(SourcePath, $"has no tensor named '{name}'");

    private static List<(string Name, string Shard)> ReadWeightMap(string indexPath)
    {
        if (!File.Exists(indexPath))
        {
            throw new CheckpointException(indexPath, "file not found");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(indexPath));
        }
        catch (Exception ex) when (ex is JsonException or ArgumentException)
        {
            throw new CheckpointException(indexPath, $"is not valid JSON ({ex.Message})", ex);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(indexPath, $"cannot be read: {ex.Message}", ex);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object
                || !root.TryGetProperty("weight_map", out var map)
                || map.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointException(indexPath, "has no \"weight_map\" object mapping tensor names to shard files");
            }

            var result = new List<(string, string)>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                string? shard = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString() : null;
                if (string.IsNullOrEmpty(shard))
                {
                    throw new CheckpointException(indexPath,
                        $"weight_map entry for tensor '{entry.Name}' is not a shard file name");
                }

                // Shards live next to the index; a path could point anywhere.
                if (shard != Path.GetFileName(shard) || shard is "." or "..")
                {
                    throw new CheckpointException(indexPath,
                        $"weight_map entry for tensor '{entry.Name}' names '{shard}', which is not a file in the model directory");
                }

                if (!seen.Add(entry.Name))
                {
                    throw new CheckpointException(indexPath, $"weight_map lists tensor '{entry.Name}' twice");
                }

                result.Add((entry.Name, shard));
            }

            return result;
        }
    }
}
