using System.Text.Json;
using System.Text.Json.Nodes;
using TaH.Engine.Checkpoints;

namespace TaH.Engine.Config;

/// <summary>Typed reads from a JSON configuration file; every mistake names the file and key.</summary>
internal sealed class JsonConfigReader
{
    private JsonConfigReader(string path, JsonObject root)
    {
        Path = path;
        Root = root;
    }

    public string Path { get; }

    public JsonObject Root { get; }

    public static JsonConfigReader Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new CheckpointException(path, "file not found");
        }

        JsonNode? node;
        try
        {
            node = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new CheckpointException(path, $"not valid JSON ({e.Message})", e);
        }

        return node is JsonObject obj
            ? new JsonConfigReader(path, obj)
            : throw new CheckpointException(path, "expected a JSON object at the top level");
    }

    public static JsonConfigReader FromObject(string path, JsonObject root) => new(path, root);

    public static JsonConfigReader? LoadIfExists(string path) => File.Exists(path) ? Load(path) : null;

    public JsonConfigReader Section(string key) =>
        Root[key] switch
        {
            JsonObject obj => new JsonConfigReader(Path, obj),
            null => new JsonConfigReader(Path, []),
            _ => throw Bad(key, "an object"),
        };

    public bool Has(string key) => Root[key] is not null;

    public int Int(string key, int? fallback = null) =>
        Get(key, fallback, n => n.GetValueKind() == JsonValueKind.Number && n.AsValue().TryGetValue(out int v) ? v : (int?)null, "an integer");

    public double Double(string key, double? fallback = null) =>
        Get(key, fallback, n => n.GetValueKind() == JsonValueKind.Number ? n.GetValue<double>() : (double?)null, "a number");

    public bool Bool(string key, bool? fallback = null) =>
        Get(key, fallback, n => n.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => (bool?)null,
        }, "true or false");

    public string String(string key, string? fallback = null) =>
        Root[key] switch
        {
            null when fallback is not null => fallback,
            null => throw Missing(key),
            JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
            _ => throw Bad(key, "a string"),
        };

    public string? OptionalString(string key) => Root[key] is null ? null : String(key);

    /// <summary>
    /// A torch dtype as the reference serialises it: <c>{"__dtype__": true, "__str__": "torch.bfloat16"}</c>,
    /// or a plain "torch.bfloat16" / "bfloat16" string. Returns the bare name ("bfloat16").
    /// </summary>
    public string TorchDtype(string key, string fallback)
    {
        string? text = Root[key] switch
        {
            null => fallback,
            JsonObject o when o["__dtype__"] is JsonValue flag && flag.GetValueKind() == JsonValueKind.True => o["__str__"]?.ToString(),
            JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
            _ => null,
        };
        string name = text?.StartsWith("torch.", StringComparison.Ordinal) == true ? text["torch.".Length..] : text ?? "";
        return name is "float32" or "float16" or "bfloat16" or "float64" or "float" or "half"
            ? name
            : throw Bad(key, "a torch dtype such as {\"__dtype__\": true, \"__str__\": \"torch.bfloat16\"}");
    }

    public int[] IntList(string key, int[]? fallback = null)
    {
        switch (Root[key])
        {
            case null when fallback is not null:
                return fallback;
            case null:
                throw Missing(key);
            case JsonArray array:
                var result = new int[array.Count];
                for (int i = 0; i < array.Count; i++)
                {
                    if (array[i] is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue(out result[i]))
                    {
                        throw Bad(key, "a list of integers");
                    }
                }

                return result;
            default:
                throw Bad(key, "a list of integers");
        }
    }

    /// <summary>An integer or a list of integers (e.g. eos_token_id), as a list.</summary>
    public int[] IntOrIntList(string key) =>
        Root[key] switch
        {
            null => [],
            JsonArray => IntList(key),
            _ => [Int(key)],
        };

    public CheckpointException Bad(string key, string expected) =>
        new(Path, $"'{key}' must be {expected}, found {Describe(Root[key])}");

    public CheckpointException Missing(string key) => new(Path, $"required key '{key}' is missing");

    private T Get<T>(string key, T? fallback, Func<JsonNode, T?> read, string expected)
        where T : struct
    {
        var node = Root[key];
        if (node is null)
        {
            return fallback ?? throw Missing(key);
        }

        return read(node) ?? throw Bad(key, expected);
    }

    private static string Describe(JsonNode? node) => node is null ? "null" : node.ToJsonString();
}
