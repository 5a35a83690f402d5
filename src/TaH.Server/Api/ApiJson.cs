using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace TaH.Server.Api;

/// <summary>The wire format: snake_case names, nulls left out, strict numbers, text kept readable.</summary>
public static class ApiJson
{
    public static JsonSerializerOptions Options { get; } = Configure(new JsonSerializerOptions());

    public static JsonSerializerOptions Configure(JsonSerializerOptions options)
    {
        options.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
        options.DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull;
        options.NumberHandling = JsonNumberHandling.Strict;
        // A JSON API, never embedded in HTML: "<think>" stays readable instead of \u003C.
        options.Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping;
        return options;
    }

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    /// <summary>"$.messages[0].content" → "messages[0].content".</summary>
    internal static string? ParamFromPath(string? path) =>
        string.IsNullOrEmpty(path) || path == "$" ? null : path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path.TrimStart('$');

    internal static string Kind(JsonValueKind kind) =>
        kind switch
        {
            JsonValueKind.Object => "an object",
            JsonValueKind.Array => "an array",
            JsonValueKind.String => "a string",
            JsonValueKind.Number => "a number",
            JsonValueKind.True or JsonValueKind.False => "a boolean",
            JsonValueKind.Null => "null",
            _ => "nothing",
        };

    // The serializer's message names a .NET type and the path; a client wants the JSON type.
    internal static string Expected(JsonException e)
    {
        var message = e.Message;
        string? type = null;
        const string Marker = "could not be converted to ";
        int at = message.IndexOf(Marker, StringComparison.Ordinal);
        if (at >= 0)
        {
            var full = message[(at + Marker.Length)..];
            int end = full.IndexOf(". Path", StringComparison.Ordinal);
            type = end > 0 ? full[..end] : full;
        }

        return type switch
        {
            null => "the value does not fit",
            _ when type.Contains("Int32", StringComparison.Ordinal) || type.Contains("Int64", StringComparison.Ordinal) => "expected an integer",
            _ when type.Contains("Double", StringComparison.Ordinal) || type.Contains("Single", StringComparison.Ordinal) => "expected a number",
            _ when type.Contains("Boolean", StringComparison.Ordinal) => "expected true or false",
            _ when type.Contains("String", StringComparison.Ordinal) => "expected a string",
            _ when type.Contains("IReadOnlyList", StringComparison.Ordinal) || type.Contains("[]", StringComparison.Ordinal) => "expected an array",
            _ => "expected an object",
        };
    }

    internal static string Describe(JsonException e)
    {
        var message = e.Message;
        foreach (var marker in new[] { " Path:", " LineNumber:" })
        {
            int at = message.IndexOf(marker, StringComparison.Ordinal);
            if (at > 0)
            {
                message = message[..at];
            }
        }

        return e.LineNumber is { } line ? $"{message.TrimEnd('.')} (line {line + 1}, byte {e.BytePositionInLine + 1})." : message;
    }
}
