namespace TaH.Engine.Generation;

/// <summary>
/// A request the engine refuses, naming the field at fault (<see cref="Param"/>, a
/// <see cref="GenerationRequest"/> field in OpenAI's spelling: "prompt", "max_tokens", "n",
/// "temperature", ...) and, where one applies, a machine-readable <see cref="Code"/>. The server
/// answers it with a 400 that names the parameter as its API spells it.
/// </summary>
public sealed class InvalidRequestException(string message, string param, string? code = null) : ArgumentException(message)
{
    public string Param { get; } = param;

    public string? Code { get; } = code;
}

/// <summary>The <see cref="InvalidRequestException.Param"/> and <see cref="InvalidRequestException.Code"/> values the engine uses.</summary>
public static class RequestFields
{
    public const string Prompt = "prompt";
    public const string MaxTokens = "max_tokens";
    public const string N = "n";
    public const string Policy = "policy";
    public const string StopTokenIds = "stop_token_ids";

    /// <summary>The structured output (<see cref="GenerationRequest.Constraint"/>), in OpenAI's spelling.</summary>
    public const string ResponseFormat = "response_format";

    /// <summary>Prompt plus output longer than the context.</summary>
    public const string ContextLengthExceeded = "context_length_exceeded";

    /// <summary>More KV cache than the pool holds, even alone.</summary>
    public const string KvCacheTooSmall = "kv_cache_too_small";
}
