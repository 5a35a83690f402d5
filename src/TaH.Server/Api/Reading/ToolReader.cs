using System.Text.Json;
using System.Text.Json.Nodes;
using TaH.Engine.Constraints;

namespace TaH.Server.Api.Reading;

/// <summary>
/// The tools a chat request offers, as the chat template renders them, whether the output is
/// parsed for calls, and the calls <c>tool_choice</c> forces (null when it forces none).
/// </summary>
internal sealed record ToolSet(IReadOnlyList<JsonNode>? Tools, bool ParseCalls, ForcedCalls? Forced = null)
{
    public static ToolSet None { get; } = new(null, false);
}

/// <summary>
/// What a forced <c>tool_choice</c> lets the output be: calls of <paramref name="Tools"/>, one or
/// (<paramref name="Multiple"/>) more. "required" offers every tool, a named function only itself.
/// </summary>
internal sealed record ForcedCalls(IReadOnlyList<ToolSpec> Tools, bool Multiple);

/// <summary><c>tools</c>, <c>tool_choice</c> and <c>parallel_tool_calls</c>.</summary>
internal static class ToolReader
{
    public static ToolSet Read(IReadOnlyList<JsonElement>? tools, JsonElement? toolChoice, bool? parallelToolCalls)
    {
        string? named = toolChoice is { ValueKind: JsonValueKind.Object } o ? FunctionName(o) : null;
        string choice = toolChoice switch
        {
            null or { ValueKind: JsonValueKind.Null } => tools is { Count: > 0 } ? "auto" : "none",
            { ValueKind: JsonValueKind.String } s when s.GetString() is "none" or "auto" or "required" => s.GetString()!,
            { ValueKind: JsonValueKind.Object } => "named",
            _ => throw ApiException.BadRequest("'tool_choice' must be 'none', 'auto', 'required' or a named function.", "tool_choice"),
        };
        if (tools is not { Count: > 0 })
        {
            if (choice is "required" or "named")
            {
                throw ApiException.BadRequest("'tool_choice' forces a tool call, but 'tools' is empty.", "tool_choice");
            }

            if (choice == "auto" && toolChoice is not null)
            {
                throw ApiException.BadRequest("'tool_choice' is set but 'tools' is empty.", "tool_choice");
            }

            return ToolSet.None;
        }

        var nodes = new List<JsonNode>(tools.Count);
        var specs = new List<ToolSpec>(tools.Count);
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
            string? parameters = function.TryGetProperty("parameters", out var p) && p.ValueKind != JsonValueKind.Null ? p.GetRawText() : null;
            specs.Add(new ToolSpec(name.GetString()!, parameters));
        }

        var forced = choice switch
        {
            "required" => new ForcedCalls(specs, parallelToolCalls != false),
            "named" => new ForcedCalls(
                specs.Where(s => s.Name == named).ToList() is { Count: > 0 } chosen
                    ? chosen
                    : throw ApiException.BadRequest($"'tool_choice' names function '{named}', which is not in 'tools'.", "tool_choice"),
                Multiple: false),
            _ => null,
        };
        return choice == "none" ? ToolSet.None : new ToolSet(nodes, true, forced);
    }

    /// <summary>The function a named tool_choice, <c>{"type": "function", "function": {"name": ...}}</c>, forces.</summary>
    private static string FunctionName(JsonElement choice)
    {
        if (!choice.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object
            || !function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString()!.Length == 0
            || (choice.TryGetProperty("type", out var type) && (type.ValueKind != JsonValueKind.String || type.GetString() != "function")))
        {
            throw ApiException.BadRequest("A named 'tool_choice' must be {\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice");
        }

        return name.GetString()!;
    }
}
