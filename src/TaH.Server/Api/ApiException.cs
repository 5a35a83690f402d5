using Microsoft.AspNetCore.Http;

namespace TaH.Server.Api;

/// <summary>A request the server refuses, with the HTTP status and OpenAI error fields to answer it with.</summary>
public sealed class ApiException(int status, string message, string type, string? param = null, string? code = null) : Exception(message)
{
    public int Status { get; } = status;

    public string Type { get; } = type;

    public string? Param { get; } = param;

    public string? Code { get; } = code;

    /// <summary>Seconds a client should wait before retrying (the Retry-After header of a 429 or 503).</summary>
    public int? RetryAfterSeconds { get; init; }

    public ErrorResponse ToResponse() => new(new ErrorBody(Message, Type, Param, Code));

    public static ApiException BadRequest(string message, string? param = null, string? code = null) =>
        new(StatusCodes.Status400BadRequest, message, "invalid_request_error", param, code);

    /// <summary>404, as OpenAI and vLLM answer it (the SDKs raise NotFoundError on a 404 only).</summary>
    public static ApiException ModelNotFound(string model, string served) =>
        new(StatusCodes.Status404NotFound, $"The model '{model}' does not exist; this server serves '{served}'.", "invalid_request_error", "model", "model_not_found");

    public static ApiException Unsupported(string param, string message) =>
        new(StatusCodes.Status400BadRequest, message, "invalid_request_error", param, "unsupported_parameter");

    public static ApiException Unavailable(string message, string code, int retryAfterSeconds) =>
        new(StatusCodes.Status503ServiceUnavailable, message, "service_unavailable", null, code) { RetryAfterSeconds = retryAfterSeconds };

    /// <summary>Draining before a stop: another instance (or this one, restarted) will answer.</summary>
    public static ApiException ShuttingDown() =>
        Unavailable("The server is shutting down; retry on another instance.", "server_shutting_down", 5);

    /// <summary>The queue is full; a slot frees as soon as a running request ends, so retry soon.</summary>
    public static ApiException Overloaded(string message) =>
        new(StatusCodes.Status429TooManyRequests, message, "rate_limit_error", null, "queue_full") { RetryAfterSeconds = 1 };

    /// <summary>An ArgumentException's message without the " (Parameter 'x')" .NET appends, which means nothing to a client.</summary>
    public static string Clean(ArgumentException e) =>
        e.ParamName is { } name ? e.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : e.Message;
}
