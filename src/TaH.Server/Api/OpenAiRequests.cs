using System.Text.Json;

namespace TaH.Server.Api;

// The request bodies, as OpenAI and vLLM name their fields (snake_case on the wire). Fields that
// take several JSON shapes (content, stop, prompt, tool_choice) stay JsonElement and are checked
// by the readers (Api/Reading), which name the offending parameter.

/// <summary>What chat and text completions share: the model, sampling, stopping, streaming and TaH.</summary>
public abstract partial record GenerationRequestBody
{
    public string? Model { get; init; }

    public int? MaxTokens { get; init; }

    public double? Temperature { get; init; }

    public double? TopP { get; init; }

    public int? TopK { get; init; }

    public double? MinP { get; init; }

    public double? PresencePenalty { get; init; }

    public double? FrequencyPenalty { get; init; }

    public double? RepetitionPenalty { get; init; }

    public long? Seed { get; init; }

    /// <summary>A string or a list of strings.</summary>
    public JsonElement? Stop { get; init; }

    public IReadOnlyList<int>? StopTokenIds { get; init; }

    public int? N { get; init; }

    public bool? Stream { get; init; }

    public StreamOptions? StreamOptions { get; init; }

    public string? User { get; init; }

    public JsonElement? LogitBias { get; init; }

    /// <summary>vLLM: keep generating past EOS (benchmarks, tests).</summary>
    public bool? IgnoreEos { get; init; }

    /// <summary>TaH: the iteration policy of this request.</summary>
    public TaHRequestOptions? Tah { get; init; }
}

/// <summary>POST /v1/chat/completions.</summary>
public sealed record ChatCompletionRequest : GenerationRequestBody
{
    public IReadOnlyList<ChatMessageParam?>? Messages { get; init; }

    public int? MaxCompletionTokens { get; init; }

    public bool? Logprobs { get; init; }

    public int? TopLogprobs { get; init; }

    /// <summary>OpenAI tool objects, passed to the chat template as sent.</summary>
    public IReadOnlyList<JsonElement>? Tools { get; init; }

    /// <summary>"none", "auto", "required" or {"type": "function", "function": {"name": ...}}.</summary>
    public JsonElement? ToolChoice { get; init; }

    public bool? ParallelToolCalls { get; init; }

    public ResponseFormat? ResponseFormat { get; init; }

    /// <summary>vLLM: arguments of the chat template, e.g. {"enable_thinking": false}.</summary>
    public Dictionary<string, JsonElement>? ChatTemplateKwargs { get; init; }

    /// <summary>vLLM: continue the final (assistant) message instead of starting a new one.</summary>
    public bool? ContinueFinalMessage { get; init; }

    /// <summary>vLLM: open a new assistant turn after the messages (default true).</summary>
    public bool? AddGenerationPrompt { get; init; }

    /// <summary>vLLM: prepend the continued final message to the output (and parse it with it).</summary>
    public bool? Echo { get; init; }
}

/// <summary>One message of a chat request.</summary>
public sealed record ChatMessageParam
{
    public string? Role { get; init; }

    /// <summary>A string, null, or a list of content parts (only text parts are read).</summary>
    public JsonElement? Content { get; init; }

    public string? Name { get; init; }

    public IReadOnlyList<ToolCallParam?>? ToolCalls { get; init; }

    public string? ToolCallId { get; init; }

    public string? ReasoningContent { get; init; }
}

public sealed record ToolCallParam
{
    public string? Id { get; init; }

    public string? Type { get; init; }

    public FunctionCallParam? Function { get; init; }
}

public sealed record FunctionCallParam
{
    public string? Name { get; init; }

    /// <summary>A JSON text (as OpenAI sends it) or a JSON object.</summary>
    public JsonElement? Arguments { get; init; }
}

public sealed record StreamOptions
{
    public bool? IncludeUsage { get; init; }
}

public sealed partial record ResponseFormat
{
    public string? Type { get; init; }
}

/// <summary>
/// The TaH extension of a request: which tokens take a second pass. <c>decider</c> (TaH, with an
/// optional <c>threshold</c> override), <c>never</c> (the base model) or <c>always</c>.
/// </summary>
public sealed record TaHRequestOptions
{
    public string? Policy { get; init; }

    public double? Threshold { get; init; }
}

/// <summary>POST /v1/completions.</summary>
public sealed partial record CompletionRequest : GenerationRequestBody
{
    /// <summary>A string, a list of strings, a list of token ids or a list of such lists.</summary>
    public JsonElement? Prompt { get; init; }

    public int? BestOf { get; init; }

    /// <summary>Number of alternatives to report per token (0..20), as the legacy API.</summary>
    public int? Logprobs { get; init; }

    public bool? Echo { get; init; }

    public string? Suffix { get; init; }
}

/// <summary>
/// vLLM's POST /tokenize: a text <c>prompt</c>, or chat <c>messages</c> rendered by the chat
/// template as a chat completion would render them.
/// </summary>
public sealed record TokenizeRequest
{
    public string? Model { get; init; }

    public string? Prompt { get; init; }

    public IReadOnlyList<ChatMessageParam?>? Messages { get; init; }

    /// <summary>Accepted as vLLM does; the supported tokenizers (Qwen3, ChatML byte-level BPE) add no special tokens.</summary>
    public bool? AddSpecialTokens { get; init; }

    public bool? AddGenerationPrompt { get; init; }

    public bool? ContinueFinalMessage { get; init; }

    public Dictionary<string, JsonElement>? ChatTemplateKwargs { get; init; }

    public IReadOnlyList<JsonElement>? Tools { get; init; }

    /// <summary>Also return each token as tokenizer.json spells it.</summary>
    public bool? ReturnTokenStrs { get; init; }
}

/// <summary>vLLM's POST /detokenize.</summary>
public sealed record DetokenizeRequest
{
    public string? Model { get; init; }

    public IReadOnlyList<int>? Tokens { get; init; }
}
