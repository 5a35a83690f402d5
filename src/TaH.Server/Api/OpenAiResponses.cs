using System.Text.Json.Serialization;

namespace TaH.Server.Api;

// Response bodies in OpenAI's shape, plus the TaH extension objects ("tah"). Nulls are left out
// except where OpenAI always writes the field (content, finish_reason, logprobs).

public sealed record ChatCompletionResponse(
    string Id,
    long Created,
    string Model,
    IReadOnlyList<ChatChoice> Choices,
    Usage Usage)
{
    [JsonPropertyOrder(-1)]
    public string Object => "chat.completion";
}

public sealed record ChatChoice(
    int Index,
    AssistantMessage Message,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] ChatLogprobs? Logprobs,
    string FinishReason,
    TaHTokens Tah);

public sealed record AssistantMessage(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Content,
    string? ReasoningContent,
    IReadOnlyList<ToolCallOut>? ToolCalls)
{
    public string Role => "assistant";
}

public sealed record ToolCallOut(string Id, FunctionCallOut Function)
{
    public string Type => "function";
}

public sealed record FunctionCallOut(string Name, string Arguments);

public sealed record ChatCompletionChunk(
    string Id,
    long Created,
    string Model,
    IReadOnlyList<ChatChunkChoice> Choices,
    Usage? Usage)
{
    [JsonPropertyOrder(-1)]
    public string Object => "chat.completion.chunk";
}

public sealed record ChatChunkChoice(
    int Index,
    ChatDelta Delta,
    ChatLogprobs? Logprobs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason,
    TaHTokens? Tah);

public sealed record ChatDelta(string? Role, string? Content, string? ReasoningContent, IReadOnlyList<ToolCallDelta>? ToolCalls);

public sealed record ToolCallDelta(int Index, string Id, FunctionCallOut Function)
{
    public string Type => "function";
}

public sealed record ChatLogprobs(IReadOnlyList<TokenLogprobOut> Content);

public sealed record TokenLogprobOut(string Token, float Logprob, IReadOnlyList<int> Bytes, IReadOnlyList<TopLogprobOut> TopLogprobs);

public sealed record TopLogprobOut(string Token, float Logprob, IReadOnlyList<int> Bytes);

public sealed record CompletionResponse(
    string Id,
    long Created,
    string Model,
    IReadOnlyList<CompletionChoice> Choices,
    Usage? Usage)
{
    [JsonPropertyOrder(-1)]
    public string Object => "text_completion";
}

public sealed record CompletionChoice(
    int Index,
    string Text,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] CompletionLogprobs? Logprobs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason,
    TaHTokens? Tah);

public sealed record CompletionLogprobs(
    IReadOnlyList<string> Tokens,
    IReadOnlyList<float> TokenLogprobs,
    IReadOnlyList<Dictionary<string, float>> TopLogprobs,
    IReadOnlyList<int> TextOffset);

public sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens, TaHUsage Tah);

/// <summary>
/// TaH figures of a response: how many generated tokens took a second pass (depth 2 or more),
/// their share, the average depth, and the policy that chose the depths.
/// </summary>
public sealed record TaHUsage(int Depth2Tokens, double Depth2Share, double AverageDepth, string Policy);

/// <summary>
/// TaH per-token depths: one entry per generated token of this choice (whole response) or of
/// this chunk (streaming), in order; 1 = one pass, 2 = the token took the second pass.
/// </summary>
public sealed record TaHTokens(IReadOnlyList<int> Depths);

public sealed record ModelList(IReadOnlyList<ModelCard> Data)
{
    [JsonPropertyOrder(-1)]
    public string Object => "list";
}

public sealed record ModelCard(string Id, long Created, string OwnedBy, string Root, int MaxModelLen, TaHModelInfo Tah)
{
    [JsonPropertyOrder(-1)]
    public string Object => "model";
}

/// <summary>What the served checkpoint can do: its deepest level, and the decider's trained threshold.</summary>
public sealed record TaHModelInfo(int MaxDepth, bool HasDecider, double? Threshold, IReadOnlyList<string> Policies, string DefaultPolicy, int VocabSize);

/// <summary>OpenAI's error body.</summary>
public sealed record ErrorResponse(ErrorBody Error);

public sealed record ErrorBody(
    string Message,
    string Type,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Param,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Code);

public sealed record HealthStatus(string Status, string Model);

/// <summary>vLLM's /tokenize answer: the tokens, their count and the context they must fit.</summary>
public sealed record TokenizeResponse(
    int Count,
    int MaxModelLen,
    IReadOnlyList<int> Tokens,
    IReadOnlyList<string>? TokenStrs);

/// <summary>vLLM's /detokenize answer.</summary>
public sealed record DetokenizeResponse(string Prompt);

/// <summary>GET /version, as vLLM answers it.</summary>
public sealed record VersionInfo(string Version);
