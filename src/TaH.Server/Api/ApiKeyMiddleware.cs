using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace TaH.Server.Api;

/// <summary>
/// Bearer keys for /v1 when any are configured. Keys are compared as SHA-256 digests with
/// <see cref="CryptographicOperations.FixedTimeEquals"/>, so the time taken says nothing about
/// how much of a guess was right, nor about a key's length.
/// </summary>
public sealed class ApiKeyMiddleware(RequestDelegate next, IReadOnlyList<string> keys)
{
    private readonly byte[][] _digests = [.. keys.Select(k => SHA256.HashData(Encoding.UTF8.GetBytes(k)))];

    public Task InvokeAsync(HttpContext context)
    {
        if (_digests.Length == 0 || !context.Request.Path.StartsWithSegments("/v1"))
        {
            return next(context);
        }

        string header = context.Request.Headers.Authorization.ToString();
        if (header.Length == 0)
        {
            throw Unauthorized("Missing API key: send it as 'Authorization: Bearer KEY'.");
        }

        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            throw Unauthorized("The Authorization header must be 'Bearer KEY'.");
        }

        var digest = SHA256.HashData(Encoding.UTF8.GetBytes(header["Bearer ".Length..].Trim()));
        bool ok = false;
        foreach (var key in _digests)
        {
            ok |= CryptographicOperations.FixedTimeEquals(digest, key); // no early exit
        }

        return ok ? next(context) : throw Unauthorized("Incorrect API key provided.");
    }

    private static ApiException Unauthorized(string message) =>
        new(StatusCodes.Status401Unauthorized, message, "authentication_error", null, "invalid_api_key");
}
