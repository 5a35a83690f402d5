using System.Text;
using System.Text.Json.Nodes;

namespace TaH.Engine.Tokenization;

/// <summary>
/// The plain ChatML template: every message as <c>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n</c>,
/// then <c>&lt;|im_start|&gt;assistant\n</c> for the generation prompt. Like the Jinja templates it
/// stands for, it ignores tools, tool calls, reasoning and enable_thinking.
/// </summary>
public sealed class ChatMlChatTemplate : ChatTemplate
{
    /// <summary>ChatML templates as they appear in tokenizer_config.json files.</summary>
    internal static readonly string[] JinjaSources =
    [
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        "{% for message in messages %}{{'<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
        "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
    ];

    public override string Family => "chatml";

    public override string Render(
        IReadOnlyList<ChatMessage> messages,
        IReadOnlyList<JsonNode>? tools = null,
        bool addGenerationPrompt = false,
        bool? enableThinking = null)
    {
        Validate(messages);
        var sb = new StringBuilder();
        foreach (var m in messages)
        {
            sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content ?? string.Empty).Append("<|im_end|>\n");
        }
        if (addGenerationPrompt)
        {
            sb.Append("<|im_start|>assistant\n");
        }
        return sb.ToString();
    }
}
