using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

namespace TaH.Server.Api;

/// <summary>
/// Answers only requests whose Host header is one of the allowed names (ASP.NET's host filtering
/// patterns), with an OpenAI-shaped 400 otherwise. Without an API key this is what keeps a web
/// page elsewhere, whose name was rebound to 127.0.0.1 (DNS rebinding), from using the server.
/// </summary>
public sealed class AllowedHostsMiddleware(RequestDelegate next, IReadOnlyList<string> allowedHosts)
{
    private readonly StringSegment[] _patterns = [.. allowedHosts.Select(h => new StringSegment(h))];
    private readonly bool _any = allowedHosts.Contains("*");

    public Task InvokeAsync(HttpContext context)
    {
        if (_any)
        {
            return next(context);
        }

        var host = context.Request.Host;
        return host.HasValue && HostString.MatchesAny(new StringSegment(host.Host), _patterns)
            ? next(context)
            : throw new ApiException(StatusCodes.Status400BadRequest,
                $"The Host header '{host.Value}' is not one this server answers to (see its --allowed-hosts).",
                "invalid_request_error", null, "host_not_allowed");
    }
}
