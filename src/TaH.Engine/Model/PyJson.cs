using System.Text.Json.Nodes;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Engine.Model;

/// <summary>Bridges objects read from a torch.save pickle to JSON configuration and back to nothing.</summary>
internal static class PyJson
{
    /// <summary>A pickled dict of plain values as JSON (dtype globals become their names).</summary>
    public static JsonObject ToJsonObject(PyDict dict)
    {
        var obj = new JsonObject();
        foreach (var (key, value) in dict)
        {
            obj[key.ToString() ?? ""] = ToJson(value);
        }

        return obj;
    }

    private static JsonNode? ToJson(object? value) =>
        value switch
        {
            null => null,
            bool b => JsonValue.Create(b),
            long l => JsonValue.Create(l),
            double d => JsonValue.Create(d),
            string s => JsonValue.Create(s),
            PyDict d => ToJsonObject(d),
            IEnumerable<object?> list => new JsonArray([.. list.Select(ToJson)]),
            _ => JsonValue.Create(value.ToString()),
        };

    /// <summary>Disposes every tensor inside a loaded payload.</summary>
    public static void DisposeTensors(object? value)
    {
        switch (value)
        {
            case torch.Tensor t:
                t.Dispose();
                break;
            case PyDict d:
                foreach (var (_, v) in d)
                {
                    DisposeTensors(v);
                }

                break;
            case IEnumerable<object?> list:
                foreach (var v in list)
                {
                    DisposeTensors(v);
                }

                break;
        }
    }
}
