using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace TaH.Server.Api;

/// <summary>
/// Turns refusals into OpenAI-shaped errors with their status, and anything unexpected into a
/// logged 500 without internals. Also gives empty error responses (404, 405, a 413 from Kestrel)
/// an OpenAI body under /v1.
/// </summary>
public sealed class ErrorHandlingMiddleware(RequestDelegate next, ILogger<ErrorHandlingMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext context)
    {
        try
        {
            await next(context);
        }
        catch (ApiException e)
        {
            await WriteAsync(context, e);
            return;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return; // the client went away: nobody to answer
        }
        catch (BadHttpRequestException e)
        {
            await WriteAsync(context, new ApiException(e.StatusCode, $"Bad request: {e.Message}", "invalid_request_error", null, e.StatusCode == 413 ? "request_too_large" : null));
            return;
        }
        catch (Exception e)
        {
            logger.LogError(e, "Unhandled error on {Method} {Path}", context.Request.Method, context.Request.Path);
            await WriteAsync(context, new ApiException(StatusCodes.Status500InternalServerError,
                $"The server failed on this request ({e.GetType().Name}); the error is in its log.", "server_error", null, "internal_error"));
            return;
        }

        if (context.Response.StatusCode >= 400 && !context.Response.HasStarted && context.Response.ContentLength is null or 0
            && string.IsNullOrEmpty(context.Response.ContentType) && context.Request.Path.StartsWithSegments("/v1"))
        {
            int status = context.Response.StatusCode;
            string message = status switch
            {
                404 => $"There is no endpoint {context.Request.Method} {context.Request.Path}.",
                405 => $"Method {context.Request.Method} is not allowed on {context.Request.Path}.",
                413 => "The request body is larger than this server's limit.",
                _ => $"The request failed with status {status}.",
            };
            await WriteAsync(context, new ApiException(status, message, "invalid_request_error", null, status == 404 ? "not_found" : null));
        }
    }

    private async Task WriteAsync(HttpContext context, ApiException e)
    {
        if (context.Response.HasStarted)
        {
            // A stream already under way: the client learns through an error event.
            logger.LogWarning("Error after the response started on {Path}: {Message}", context.Request.Path, e.Message);
            try
            {
                await Sse.WriteErrorAsync(context, e, context.RequestAborted);
                await Sse.DoneAsync(context, context.RequestAborted);
            }
            catch (Exception write) when (write is OperationCanceledException or IOException or InvalidOperationException)
            {
            }

            return;
        }

        context.Response.Clear();
        context.Response.StatusCode = e.Status;
        context.Response.ContentType = "application/json";
        if (e.Status == StatusCodes.Status401Unauthorized)
        {
            context.Response.Headers.WWWAuthenticate = "Bearer";
        }

        if (e.RetryAfterSeconds is { } seconds)
        {
            context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        await context.Response.WriteAsync(ApiJson.Serialize(e.ToResponse()));
    }
}
