using System.Text.Json;

namespace TaH.Server.Api.Reading;

/// <summary><c>stop</c>: a string or a list of strings the output ends before.</summary>
internal static class StopReader
{
    private const int MaxStopStrings = 16;

    public static List<string> Read(JsonElement? stop)
    {
        var list = new List<string>();
        switch (stop)
        {
            case null or { ValueKind: JsonValueKind.Null }:
                break;
            case { ValueKind: JsonValueKind.String } s:
                list.Add(s.GetString()!);
                break;
            case { ValueKind: JsonValueKind.Array } a:
                foreach (var item in a.EnumerateArray())
                {
                    if (item.ValueKind != JsonValueKind.String)
                    {
                        throw ApiException.BadRequest("'stop' must be a string or a list of strings.", "stop");
                    }

                    list.Add(item.GetString()!);
                }

                break;
            default:
                throw ApiException.BadRequest("'stop' must be a string or a list of strings.", "stop");
        }

        if (list.Count > MaxStopStrings)
        {
            throw ApiException.BadRequest($"'stop' has {list.Count} strings; at most {MaxStopStrings} are allowed.", "stop");
        }

        if (list.Any(s => s.Length == 0))
        {
            throw ApiException.BadRequest("'stop' strings must not be empty.", "stop");
        }

        return list;
    }
}
