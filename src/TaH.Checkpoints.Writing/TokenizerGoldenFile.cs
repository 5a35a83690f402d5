using System.Text.Json;
using System.Text.Json.Nodes;
using TaH.Engine.Tokenization;

namespace TaH.Checkpoints.Writing;

/// <summary>
/// The tokenizer golden-file format (tests/fixtures/qwen3-tokenizer/golden.json):
/// <c>{"encode": [{"text"}], "chat": [{"messages", "tools"?, "add_generation_prompt", "enable_thinking"?}]}</c>.
/// <see cref="Fill"/> writes the engine's <c>ids</c> (and <c>rendered</c> for chat) into a copy,
/// keeping every other field as it is; <c>tah tokenize</c> uses it.
/// </summary>
public static class TokenizerGoldenFile
{
    /// <summary>
    /// Fills in ids and rendered prompts. Values are read as the Jinja template would see them
    /// after JSON.parse (truthiness of add_generation_prompt, enable_thinking only when a boolean).
    /// <paramref name="template"/> overrides the tokenizer's chat template.
    /// Throws <see cref="ArgumentException"/> for input not in this format.
    /// </summary>
    public static JsonNode Fill(JsonNode input, TextTokenizer tokenizer, ChatTemplate? template = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (input.DeepClone() is not JsonObject output)
        {
            throw new ArgumentException("the golden file is not a JSON object", nameof(input));
        }

        if (output["encode"] is { } encode)
        {
            var i = 0;
            foreach (var item in Items(encode, "encode"))
            {
                if (item["text"] is not JsonValue text || text.GetValueKind() != JsonValueKind.String)
                {
                    throw new ArgumentException($"encode[{i}] has no \"text\" string", nameof(input));
                }
                item["ids"] = Ids(tokenizer.Encode(text.GetValue<string>()));
                i++;
            }
        }

        if (output["chat"] is { } chat)
        {
            var i = 0;
            foreach (var item in Items(chat, "chat"))
            {
                var where = $"chat[{i}]";
                var chatTemplate = template ?? tokenizer.ChatTemplate
                    ?? throw new ArgumentException($"{where}: the tokenizer in {tokenizer.Directory} has no chat template", nameof(input));
                var messages = ReadMessages(item["messages"], where);
                var tools = ReadTools(item["tools"], where);
                var addGenerationPrompt = JinjaJson.IsTruthy(item["add_generation_prompt"]);
                bool? enableThinking = item["enable_thinking"] is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False
                    ? v.GetValue<bool>()
                    : null;
                string rendered;
                try
                {
                    rendered = chatTemplate.Render(messages, tools, addGenerationPrompt, enableThinking);
                }
                catch (ArgumentException e)
                {
                    throw new ArgumentException($"{where}: {e.Message}", nameof(input), e);
                }
                item["rendered"] = rendered;
                item["ids"] = Ids(tokenizer.Encode(rendered));
                i++;
            }
        }
        return output;
    }

    private static IEnumerable<JsonObject> Items(JsonNode list, string name)
    {
        if (list is not JsonArray array)
        {
            throw new ArgumentException($"\"{name}\" is not an array");
        }
        for (var i = 0; i < array.Count; i++)
        {
            yield return array[i] as JsonObject ?? throw new ArgumentException($"{name}[{i}] is not an object");
        }
    }

    private static JsonArray Ids(IReadOnlyList<int> ids)
    {
        var array = new JsonArray();
        foreach (var id in ids)
        {
            array.Add(id);
        }
        return array;
    }

    private static List<ChatMessage> ReadMessages(JsonNode? node, string where)
    {
        if (node is not JsonArray array)
        {
            throw new ArgumentException($"{where}: \"messages\" is not an array");
        }
        var messages = new List<ChatMessage>(array.Count);
        for (var i = 0; i < array.Count; i++)
        {
            var at = $"{where}.messages[{i}]";
            if (array[i] is not JsonObject m)
            {
                throw new ArgumentException($"{at} is not an object");
            }
            messages.Add(new ChatMessage(
                OptionalString(m["role"], at, "role") ?? throw new ArgumentException($"{at} has no \"role\" string"),
                OptionalString(m["content"], at, "content"))
            {
                ReasoningContent = OptionalString(m["reasoning_content"], at, "reasoning_content"),
                ToolCalls = ReadToolCalls(m["tool_calls"], at),
                ToolCallId = OptionalString(m["tool_call_id"], at, "tool_call_id"),
                Name = OptionalString(m["name"], at, "name"),
            });
        }
        return messages;
    }

    private static List<ToolCall>? ReadToolCalls(JsonNode? node, string at)
    {
        if (!JinjaJson.IsTruthy(node))
        {
            return null;
        }
        if (node is not JsonArray array)
        {
            throw new ArgumentException($"{at}: \"tool_calls\" is not an array");
        }
        var calls = new List<ToolCall>(array.Count);
        for (var i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonObject call)
            {
                throw new ArgumentException($"{at}.tool_calls[{i}] is not an object");
            }
            // As the template does: the OpenAI shape {"function": {...}} when "function" is truthy, else flat.
            var source = call;
            if (JinjaJson.IsTruthy(call["function"]))
            {
                source = call["function"] as JsonObject
                    ?? throw new ArgumentException($"{at}.tool_calls[{i}].function is not an object");
            }
            calls.Add(new ToolCall(JinjaJson.ToOutputString(source["name"]), source["arguments"]?.DeepClone())
            {
                Id = call["id"] is JsonValue id && id.GetValueKind() == JsonValueKind.String ? id.GetValue<string>() : null,
            });
        }
        return calls;
    }

    private static List<JsonNode>? ReadTools(JsonNode? node, string where)
    {
        if (node is null || node.GetValueKind() == JsonValueKind.Null)
        {
            return null;
        }
        if (node is not JsonArray array)
        {
            throw new ArgumentException($"{where}: \"tools\" is not an array");
        }
        return array.Select((t, i) => t ?? throw new ArgumentException($"{where}.tools[{i}] is null")).ToList();
    }

    private static string? OptionalString(JsonNode? node, string at, string field)
    {
        if (node is null || node.GetValueKind() == JsonValueKind.Null)
        {
            return null;
        }
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String)
        {
            return v.GetValue<string>();
        }
        throw new ArgumentException($"{at}: \"{field}\" is not a string");
    }
}
