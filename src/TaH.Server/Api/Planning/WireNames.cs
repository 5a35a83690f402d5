using TaH.Engine.Generation;

namespace TaH.Server.Api.Planning;

/// <summary>
/// How an endpoint spells the engine's request fields: chat sends its prompt as <c>messages</c>,
/// may call max_tokens <c>max_completion_tokens</c> and the number of alternatives
/// <c>top_logprobs</c>; the policy sits in the <c>tah</c> object. A structured output is named by
/// the parameter that asked for it (response_format, tools for a forced tool_choice, guided_json, ...).
/// </summary>
internal sealed record WireNames(string Prompt, string MaxTokens, string Logprobs)
{
    public string Constraint { get; init; } = RequestFields.ResponseFormat;

    public static WireNames Completion { get; } = new("prompt", RequestFields.MaxTokens, "logprobs");

    public static WireNames Chat(string maxTokens) => new("messages", maxTokens, "top_logprobs");

    public string Of(string field) => field switch
    {
        RequestFields.Prompt => Prompt,
        RequestFields.MaxTokens => MaxTokens,
        RequestFields.Policy => "tah.policy",
        RequestFields.ResponseFormat => Constraint,
        "logprobs" => Logprobs,
        _ => field,
    };

    /// <summary>The engine's refusal as the 400 this endpoint answers, the field named as its clients spell it.</summary>
    public ApiException Refusal(InvalidRequestException e)
    {
        string param = Of(e.Param);
        string message = param == e.Param ? e.Message : e.Message.Replace($"'{e.Param}'", $"'{param}'", StringComparison.Ordinal);
        return ApiException.BadRequest(message, param, e.Code);
    }
}
