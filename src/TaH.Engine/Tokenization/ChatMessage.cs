using System.Text.Json.Nodes;

namespace TaH.Engine.Tokenization;

/// <summary>
/// One message of a conversation, as the chat templates see it (the OpenAI chat fields).
/// Content may be null (an assistant turn with only tool calls); the templates render it as "".
/// </summary>
public sealed record ChatMessage(string Role, string? Content)
{
    /// <summary>The assistant's reasoning, sent apart from the content (rendered inside &lt;think&gt;).</summary>
    public string? ReasoningContent { get; init; }

    public IReadOnlyList<ToolCall>? ToolCalls { get; init; }

    /// <summary>For a tool message: the id of the call it answers (not rendered by Qwen3's template).</summary>
    public string? ToolCallId { get; init; }

    public string? Name { get; init; }

    public static ChatMessage System(string content) => new("system", content);

    public static ChatMessage User(string content) => new("user", content);

    public static ChatMessage Assistant(string? content, IReadOnlyList<ToolCall>? toolCalls = null) =>
        new("assistant", content) { ToolCalls = toolCalls };

    public static ChatMessage Tool(string content, string? toolCallId = null) => new("tool", content) { ToolCallId = toolCallId };
}

/// <summary>
/// A function call made by the assistant. <see cref="Arguments"/> is kept as JSON: a JSON string
/// is rendered as its raw text (as the OpenAI API sends arguments), anything else with tojson.
/// </summary>
public sealed record ToolCall(string Name, JsonNode? Arguments)
{
    public string? Id { get; init; }
}
