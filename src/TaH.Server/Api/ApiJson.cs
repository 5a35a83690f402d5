using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http;

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

    /// <summary>
    /// Reads the body as <typeparamref name="T"/>. Malformed JSON, a body of the wrong shape or a
    /// field of the wrong type become a 400 naming the problem; a body over the size limit a 413.
    /// </summary>
    public static async Task<T> ReadBodyAsync<T>(HttpContext context)
        where T : class
    {
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(context.Request.Body, default, context.RequestAborted);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw new ApiException(StatusCodes.Status413PayloadTooLarge,
                $"The request body is larger than this server's limit of {context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize} bytes.",
                "invalid_request_error", null, "request_too_large");
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"The request body is not valid JSON: {Describe(e)}", null, "invalid_json");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw ApiException.BadRequest($"The request body must be a JSON object, not {Kind(document.RootElement.ValueKind)}.", null, "invalid_json");
            }

            try
            {
                return document.RootElement.Deserialize<T>(Options)
                    ?? throw ApiException.BadRequest("The request body is empty.", null, "invalid_json");
            }
            catch (JsonException e)
            {
                var param = ParamFromPath(e.Path);
                throw ApiException.BadRequest(
                    param is null ? $"The request body has a value of the wrong type: {Describe(e)}" : $"'{param}' has the wrong type: {Expected(e)}.",
                    param,
                    "invalid_type");
            }
        }
    }

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
    private static string Expected(JsonException e)
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

    private static string Describe(JsonException e)
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
