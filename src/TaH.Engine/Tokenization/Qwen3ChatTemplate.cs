using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TaH.Engine.Tokenization;

/// <summary>
/// Qwen3's chat template (the Jinja text below, from Qwen3's tokenizer_config.json) written out in
/// C#. It follows the template as @huggingface/jinja 0.5.11 runs it, which is what the golden
/// files record; where that differs from Python Jinja it follows the JavaScript:
/// <c>strip('\n')</c>, <c>lstrip('\n')</c> and <c>rstrip('\n')</c> ignore their argument and trim
/// all (JavaScript) white space, and <c>tojson</c> writes numbers as JavaScript does.
/// A null content, on which the template itself would fail, is rendered as "".
/// </summary>
public sealed class Qwen3ChatTemplate : ChatTemplate
{
    internal const string JinjaSource = """
        {%- if tools %}
            {{- '<|im_start|>system\n' }}
            {%- if messages[0].role == 'system' %}
                {{- messages[0].content + '\n\n' }}
            {%- endif %}
            {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
            {%- for tool in tools %}
                {{- "\n" }}
                {{- tool | tojson }}
            {%- endfor %}
            {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
        {%- else %}
            {%- if messages[0].role == 'system' %}
                {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
            {%- endif %}
        {%- endif %}
        {%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
        {%- for message in messages[::-1] %}
            {%- set index = (messages|length - 1) - loop.index0 %}
            {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
                {%- set ns.multi_step_tool = false %}
                {%- set ns.last_query_index = index %}
            {%- endif %}
        {%- endfor %}
        {%- for message in messages %}
            {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
                {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
            {%- elif message.role == "assistant" %}
                {%- set content = message.content %}
                {%- set reasoning_content = '' %}
                {%- if message.reasoning_content is defined and message.reasoning_content is not none %}
                    {%- set reasoning_content = message.reasoning_content %}
                {%- else %}
                    {%- if '</think>' in message.content %}
                        {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
                        {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                    {%- endif %}
                {%- endif %}
                {%- if loop.index0 > ns.last_query_index %}
                    {%- if loop.last or (not loop.last and reasoning_content) %}
                        {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
                    {%- else %}
                        {{- '<|im_start|>' + message.role + '\n' + content }}
                    {%- endif %}
                {%- else %}
                    {{- '<|im_start|>' + message.role + '\n' + content }}
                {%- endif %}
                {%- if message.tool_calls %}
                    {%- for tool_call in message.tool_calls %}
                        {%- if (loop.first and content) or (not loop.first) %}
                            {{- '\n' }}
                        {%- endif %}
                        {%- if tool_call.function %}
                            {%- set tool_call = tool_call.function %}
                        {%- endif %}
                        {{- '<tool_call>\n{"name": "' }}
                        {{- tool_call.name }}
                        {{- '", "arguments": ' }}
                        {%- if tool_call.arguments is string %}
                            {{- tool_call.arguments }}
                        {%- else %}
                            {{- tool_call.arguments | tojson }}
                        {%- endif %}
                        {{- '}\n</tool_call>' }}
                    {%- endfor %}
                {%- endif %}
                {{- '<|im_end|>\n' }}
            {%- elif message.role == "tool" %}
                {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
                    {{- '<|im_start|>user' }}
                {%- endif %}
                {{- '\n<tool_response>\n' }}
                {{- message.content }}
                {{- '\n</tool_response>' }}
                {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
                    {{- '<|im_end|>\n' }}
                {%- endif %}
            {%- endif %}
        {%- endfor %}
        {%- if add_generation_prompt %}
            {{- '<|im_start|>assistant\n' }}
            {%- if enable_thinking is defined and enable_thinking is false %}
                {{- '<think>\n\n</think>\n\n' }}
            {%- endif %}
        {%- endif %}
        """;

    public override string Family => "qwen3";

    public override string Render(
        IReadOnlyList<ChatMessage> messages,
        IReadOnlyList<JsonNode>? tools = null,
        bool addGenerationPrompt = false,
        bool? enableThinking = null)
    {
        Validate(messages);
        var sb = new StringBuilder();
        var first = messages[0];

        if (tools is { Count: > 0 })
        {
            sb.Append("<|im_start|>system\n");
            if (first.Role == "system")
            {
                sb.Append(first.Content ?? string.Empty).Append("\n\n");
            }
            sb.Append("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n");
            sb.Append("You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
            foreach (var tool in tools)
            {
                sb.Append('\n').Append(JinjaJson.ToJson(tool));
            }
            sb.Append("\n</tools>\n\nFor each function call, return a json object with function name and arguments ");
            sb.Append("within <tool_call></tool_call> XML tags:\n<tool_call>\n");
            sb.Append("{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
        }
        else if (first.Role == "system")
        {
            sb.Append("<|im_start|>system\n").Append(first.Content ?? string.Empty).Append("<|im_end|>\n");
        }

        // The last user turn that is a real query, not a wrapped tool response; reasoning is
        // rendered only for the assistant turns after it.
        var lastQueryIndex = messages.Count - 1;
        for (var i = messages.Count - 1; i >= 0; i--)
        {
            var m = messages[i];
            var c = m.Content ?? string.Empty;
            if (m.Role == "user"
                && !(c.StartsWith("<tool_response>", StringComparison.Ordinal) && c.EndsWith("</tool_response>", StringComparison.Ordinal)))
            {
                lastQueryIndex = i;
                break;
            }
        }

        for (var i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            var isLast = i == messages.Count - 1;
            var messageContent = m.Content ?? string.Empty;
            if (m.Role == "user" || (m.Role == "system" && i != 0))
            {
                sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(messageContent).Append("<|im_end|>\n");
            }
            else if (m.Role == "assistant")
            {
                var content = messageContent;
                var reasoning = string.Empty;
                if (m.ReasoningContent is not null)
                {
                    reasoning = m.ReasoningContent;
                }
                else if (messageContent.Contains("</think>", StringComparison.Ordinal))
                {
                    var parts = messageContent.Split("</think>");
                    content = JsString.TrimStart(parts[^1]);
                    reasoning = JsString.TrimStart(JsString.TrimEnd(parts[0]).Split("<think>")[^1]);
                }

                sb.Append("<|im_start|>assistant\n");
                if (i > lastQueryIndex && (isLast || reasoning.Length > 0))
                {
                    sb.Append("<think>\n").Append(JsString.Trim(reasoning)).Append("\n</think>\n\n").Append(JsString.TrimStart(content));
                }
                else
                {
                    sb.Append(content);
                }

                if (m.ToolCalls is { Count: > 0 } calls)
                {
                    for (var j = 0; j < calls.Count; j++)
                    {
                        if (j > 0 || content.Length > 0)
                        {
                            sb.Append('\n');
                        }
                        var call = calls[j];
                        sb.Append("<tool_call>\n{\"name\": \"").Append(call.Name ?? string.Empty).Append("\", \"arguments\": ");
                        if (call.Arguments is JsonValue v && v.GetValueKind() == JsonValueKind.String)
                        {
                            sb.Append(v.GetValue<string>());
                        }
                        else
                        {
                            sb.Append(JinjaJson.ToJson(call.Arguments));
                        }
                        sb.Append("}\n</tool_call>");
                    }
                }
                sb.Append("<|im_end|>\n");
            }
            else if (m.Role == "tool")
            {
                if (i == 0 || messages[i - 1].Role != "tool")
                {
                    sb.Append("<|im_start|>user");
                }
                sb.Append("\n<tool_response>\n").Append(messageContent).Append("\n</tool_response>");
                if (isLast || messages[i + 1].Role != "tool")
                {
                    sb.Append("<|im_end|>\n");
                }
            }
        }

        if (addGenerationPrompt)
        {
            sb.Append("<|im_start|>assistant\n");
            if (enableThinking == false)
            {
                sb.Append("<think>\n\n</think>\n\n");
            }
        }
        return sb.ToString();
    }
}
