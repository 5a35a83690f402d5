using Microsoft.AspNetCore.Http;

namespace TaH.Server.Api;

/// <summary>A request the server refuses, with the HTTP status and OpenAI error fields to answer it with.</summary>
public sealed class ApiException(int status, string message, string type, string? param = null, string? code = null) : Exception(message)
{
    public int Status { get; } = status;

    public string Type { get; } = type;

    public string? Param { get; } = param;

    public string? Code { get; } = code;

    public ErrorResponse ToResponse() => new(new ErrorBody(Message, Type, Param, Code));

    public static ApiException BadRequest(string message, string? param = null, string? code = null) =>
        new(StatusCodes.Status400BadRequest, message, "invalid_request_error", param, code);

    public static ApiException ModelNotFound(string model, string served) =>
        new(StatusCodes.Status400BadRequest, $"The model '{model}' does not exist; this server serves '{served}'.", "invalid_request_error", "model", "model_not_found");

    public static ApiException Unsupported(string param, string message) =>
        new(StatusCodes.Status400BadRequest, message, "invalid_request_error", param, "unsupported_parameter");

    public static ApiException Unavailable(string message, string code) =>
        new(StatusCodes.Status503ServiceUnavailable, message, "service_unavailable", null, code);

    public static ApiException Overloaded(string message) =>
        new(StatusCodes.Status429TooManyRequests, message, "rate_limit_error", null, "queue_full");
}
