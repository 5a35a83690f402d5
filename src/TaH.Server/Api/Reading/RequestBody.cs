using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Net.Http.Headers;

namespace TaH.Server.Api.Reading;

/// <summary>
/// Reads a JSON request body once, checks it, and binds it to a request type. Malformed JSON, a
/// body of the wrong shape, a string that is not valid text or a field of the wrong type become a
/// 400 naming the problem; a body that is not <c>application/json</c> a 415; one over the size
/// limit a 413.
/// </summary>
internal static class RequestBody
{
    // Bodies are read into buffers of a pool of their own, a few of each size: after a burst of
    // large bodies it keeps at most those, not one per core and size as the shared pool would.
    private const int PooledBodyBytes = 4 << 20;
    private static readonly ArrayPool<byte> Buffers = ArrayPool<byte>.Create(PooledBodyBytes, maxArraysPerBucket: 4);

    public static async Task<T> ReadAsync<T>(HttpContext context)
        where T : class
    {
        RequireJson(context.Request);
        var (buffer, length) = await ReadAllAsync(context);
        if (length >= LargeBodyCollector.ThresholdBytes)
        {
            LargeBodyCollector.AfterResponse(context);
        }

        try
        {
            return Bind<T>(buffer.AsMemory(0, length));
        }
        finally
        {
            Buffers.Return(buffer);
        }
    }

    /// <summary>As OpenAI: a POST body is JSON, in UTF-8 (a cross-origin form or text/plain post is refused).</summary>
    private static void RequireJson(HttpRequest request)
    {
        bool json = MediaTypeHeaderValue.TryParse(request.ContentType, out var type)
            && (type.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase) || type.Suffix.Equals("json", StringComparison.OrdinalIgnoreCase))
            && (!type.Charset.HasValue || type.Charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase));
        if (!json)
        {
            throw new ApiException(StatusCodes.Status415UnsupportedMediaType,
                $"The request body must be JSON, sent with 'Content-Type: application/json' (got '{(string.IsNullOrEmpty(request.ContentType) ? "none" : request.ContentType)}').",
                "invalid_request_error", null, "unsupported_media_type");
        }
    }

    private static async Task<(byte[] Buffer, int Length)> ReadAllAsync(HttpContext context)
    {
        var body = context.Request.Body;
        long? declared = context.Request.ContentLength;
        var buffer = Buffers.Rent(declared is > 0 and <= int.MaxValue ? (int)declared.Value : 16 << 10);
        int length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    var larger = Buffers.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, length).CopyTo(larger);
                    Buffers.Return(buffer);
                    buffer = larger;
                }

                int read = await body.ReadAsync(buffer.AsMemory(length), context.RequestAborted);
                if (read == 0)
                {
                    return (buffer, length);
                }

                length += read;
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            Buffers.Return(buffer);
            throw new ApiException(StatusCodes.Status413PayloadTooLarge,
                $"The request body is larger than this server's limit of {context.Features.Get<IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize} bytes.",
                "invalid_request_error", null, "request_too_large");
        }
        catch
        {
            Buffers.Return(buffer);
            throw;
        }
    }

    /// <summary>Parses (without copying the bytes), checks every string, and binds.</summary>
    internal static T Bind<T>(ReadOnlyMemory<byte> utf8)
        where T : class
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(utf8);
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"The request body is not valid JSON: {ApiJson.Describe(e)}", null, "invalid_json");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw ApiException.BadRequest($"The request body must be a JSON object, not {ApiJson.Kind(root.ValueKind)}.", null, "invalid_json");
            }

            if (JsonStrings.FindInvalid(root) is { } path)
            {
                var param = ApiJson.ParamFromPath(path);
                throw ApiException.BadRequest(
                    $"{(param is null ? "The request body" : $"'{param}'")} is not valid text: it holds invalid UTF-8 or an unpaired UTF-16 surrogate escape.",
                    param, "invalid_string");
            }

            try
            {
                return root.Deserialize<T>(ApiJson.Options)
                    ?? throw ApiException.BadRequest("The request body is empty.", null, "invalid_json");
            }
            catch (JsonException e)
            {
                var param = ApiJson.ParamFromPath(e.Path);
                throw ApiException.BadRequest(
                    param is null ? $"The request body has a value of the wrong type: {ApiJson.Describe(e)}" : $"'{param}' has the wrong type: {ApiJson.Expected(e)}.",
                    param,
                    "invalid_type");
            }
        }
    }
}
