using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TaH.Engine.Tokenization;

namespace TaH.Server.Api.Reading;

/// <summary>A chat request's <c>messages</c>, as the chat template takes them: roles, text content, tool calls.</summary>
internal static class MessageReader
{
    public static List<ChatMessage> Read(IReadOnlyList<ChatMessageParam?>? messages)
    {
        if (messages is not { Count: > 0 })
        {
            throw ApiException.BadRequest("'messages' must be a non-empty list of messages.", "messages");
        }

        var result = new List<ChatMessage>(messages.Count);
        for (int i = 0; i < messages.Count; i++)
        {
            result.Add(ReadMessage(messages[i] ?? throw ApiException.BadRequest($"'messages[{i}]' must be a message object, not null.", $"messages[{i}]"), i));
        }

        return result;
    }

    private static ChatMessage ReadMessage(ChatMessageParam m, int i)
    {
        string role = m.Role ?? throw ApiException.BadRequest($"'messages[{i}].role' is required.", $"messages[{i}].role");
        if (role is not ("system" or "user" or "assistant" or "tool" or "developer"))
        {
            throw ApiException.BadRequest($"'messages[{i}].role' is '{role}'; the roles are system, developer, user, assistant and tool.", $"messages[{i}].role");
        }

        if (role == "developer")
        {
            role = "system"; // OpenAI's newer name for the system role
        }

        string? content = ReadContent(m.Content, i);
        if (content is null && role != "assistant")
        {
            throw ApiException.BadRequest($"'messages[{i}].content' is required for a {role} message.", $"messages[{i}].content");
        }

        List<ToolCall>? calls = null;
        if (m.ToolCalls is { Count: > 0 } toolCalls)
        {
            if (role != "assistant")
            {
                throw ApiException.BadRequest($"'messages[{i}].tool_calls' is only allowed on assistant messages.", $"messages[{i}].tool_calls");
            }

            calls = [.. toolCalls.Select((c, j) => ReadToolCall(c, i, j))];
        }

        return new ChatMessage(role, content)
        {
            ToolCalls = calls,
            ToolCallId = m.ToolCallId,
            Name = m.Name,
            ReasoningContent = m.ReasoningContent,
        };
    }

    private static string? ReadContent(JsonElement? content, int i)
    {
        switch (content)
        {
            case null or { ValueKind: JsonValueKind.Null }:
                return null;
            case { ValueKind: JsonValueKind.String } s:
                return s.GetString();
            case { ValueKind: JsonValueKind.Array } parts:
                var text = new StringBuilder();
                int j = 0;
                foreach (var part in parts.EnumerateArray())
                {
                    string param = $"messages[{i}].content[{j}]";
                    if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                    {
                        throw ApiException.BadRequest($"'{param}' must be a content part object with a 'type'.", param);
                    }

                    if (type.GetString() != "text")
                    {
                        throw ApiException.Unsupported($"{param}.type", $"Content part type '{type.GetString()}' is not supported: this model reads text only.");
                    }

                    if (!part.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
                    {
                        throw ApiException.BadRequest($"'{param}.text' must be a string.", $"{param}.text");
                    }

                    // vLLM joins text parts with new lines.
                    if (j > 0)
                    {
                        text.Append('\n');
                    }

                    text.Append(t.GetString());
                    j++;
                }

                return text.ToString();
            default:
                throw ApiException.BadRequest($"'messages[{i}].content' must be a string or a list of content parts.", $"messages[{i}].content");
        }
    }

    private static ToolCall ReadToolCall(ToolCallParam? c, int i, int j)
    {
        string param = $"messages[{i}].tool_calls[{j}]";
        if (c is null)
        {
            throw ApiException.BadRequest($"'{param}' must be a tool call object, not null.", param);
        }

        if (c.Type is not (null or "function"))
        {
            throw ApiException.BadRequest($"'{param}.type' must be 'function'.", $"{param}.type");
        }

        if (c.Function?.Name is not { Length: > 0 } name)
        {
            throw ApiException.BadRequest($"'{param}.function.name' is required.", $"{param}.function.name");
        }

        // The template renders arguments with tojson, as vLLM hands it the parsed object.
        JsonNode? arguments = c.Function.Arguments switch
        {
            null or { ValueKind: JsonValueKind.Null } => new JsonObject(),
            { ValueKind: JsonValueKind.String } s => ParseArguments(s.GetString()!, $"{param}.function.arguments"),
            { } other => JsonNode.Parse(other.GetRawText()),
        };
        return new ToolCall(name, arguments) { Id = c.Id };
    }

    private static JsonNode? ParseArguments(string text, string param)
    {
        try
        {
            return JsonNode.Parse(text.Length == 0 ? "{}" : text);
        }
        catch (JsonException)
        {
            throw ApiException.BadRequest($"'{param}' is not valid JSON.", param);
        }
    }
}
