using System.Text.Json;
using System.Text.Json.Nodes;

namespace TaH.Server.Api.Reading;

/// <summary>The tools a chat request offers, as the chat template renders them, and whether the output is parsed for calls.</summary>
internal sealed record ToolSet(IReadOnlyList<JsonNode>? Tools, bool ParseCalls)
{
    public static ToolSet None { get; } = new(null, false);
}

/// <summary><c>tools</c> and <c>tool_choice</c>.</summary>
internal static class ToolReader
{
    public static ToolSet Read(IReadOnlyList<JsonElement>? tools, JsonElement? toolChoice)
    {
        string choice = toolChoice switch
        {
            null or { ValueKind: JsonValueKind.Null } => tools is { Count: > 0 } ? "auto" : "none",
            { ValueKind: JsonValueKind.String } s when s.GetString() is "none" or "auto" => s.GetString()!,
            { ValueKind: JsonValueKind.String } s when s.GetString() == "required" =>
                throw ApiException.Unsupported("tool_choice", "tool_choice 'required' is not supported: this server cannot force a call (no guided decoding); use 'auto'."),
            { ValueKind: JsonValueKind.Object } =>
                throw ApiException.Unsupported("tool_choice", "A named tool_choice is not supported: this server cannot force a call (no guided decoding); use 'auto'."),
            _ => throw ApiException.BadRequest("'tool_choice' must be 'none', 'auto', 'required' or a named function.", "tool_choice"),
        };
        if (tools is not { Count: > 0 })
        {
            if (choice == "auto" && toolChoice is not null)
            {
                throw ApiException.BadRequest("'tool_choice' is set but 'tools' is empty.", "tool_choice");
            }

            return ToolSet.None;
        }

        var nodes = new List<JsonNode>(tools.Count);
        for (int i = 0; i < tools.Count; i++)
        {
            var tool = tools[i];
            if (tool.ValueKind != JsonValueKind.Object
                || !tool.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "function"
                || !tool.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object
                || !function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString()!.Length == 0)
            {
                throw ApiException.BadRequest($"'tools[{i}]' must be {{\"type\": \"function\", \"function\": {{\"name\": ..., \"parameters\": ...}}}}.", $"tools[{i}]");
            }

            nodes.Add(JsonNode.Parse(tool.GetRawText())!);
        }

        return choice == "none" ? ToolSet.None : new ToolSet(nodes, true);
    }
}
