using System.Text.Json;
using TaH.Engine.Checkpoints;
using TaH.Engine.Tokenization;
using TaH.Server.Api.Reading;

namespace TaH.Server.Api.Planning;

/// <summary>How a conversation becomes prompt text: the template's options a chat request sets.</summary>
internal sealed record ChatRendering(bool? EnableThinking, bool ContinueFinal, bool AddGenerationPrompt)
{
    /// <summary>
    /// <c>chat_template_kwargs.enable_thinking</c>, and vLLM's <c>continue_final_message</c> and
    /// <c>add_generation_prompt</c> (default true), which exclude each other.
    /// </summary>
    public static ChatRendering Read(Dictionary<string, JsonElement>? templateKwargs, bool? continueFinalMessage, bool? addGenerationPrompt)
    {
        bool? enableThinking = null;
        if (templateKwargs?.TryGetValue("enable_thinking", out var thinking) == true)
        {
            enableThinking = thinking.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                JsonValueKind.Null => null,
                _ => throw ApiException.BadRequest("'chat_template_kwargs.enable_thinking' must be true or false.", "chat_template_kwargs.enable_thinking"),
            };
        }

        bool continueFinal = continueFinalMessage == true;
        if (continueFinal && addGenerationPrompt == true)
        {
            throw ApiException.BadRequest("'continue_final_message' and 'add_generation_prompt' cannot both be true.", "continue_final_message");
        }

        return new ChatRendering(enableThinking, continueFinal, !continueFinal && addGenerationPrompt != false);
    }
}

/// <summary>Renders a conversation with the served tokenizer's chat template; its refusals are 400s.</summary>
internal static class ChatPrompt
{
    public static string Render(TextTokenizer tokenizer, IReadOnlyList<ChatMessage> messages, ToolSet tools, ChatRendering rendering)
    {
        var template = TemplateOf(tokenizer);
        try
        {
            return rendering.ContinueFinal
                ? template.RenderContinuingFinal(messages, tools.Tools, rendering.EnableThinking)
                : template.Render(messages, tools.Tools, rendering.AddGenerationPrompt, rendering.EnableThinking);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(ApiException.Clean(e), rendering.ContinueFinal ? "continue_final_message" : "messages");
        }
    }

    private static ChatTemplate TemplateOf(TextTokenizer tokenizer)
    {
        try
        {
            return tokenizer.ChatTemplate
                ?? throw ApiException.BadRequest("This model has no chat template (tokenizer_config.json); use /v1/completions.", "messages", "no_chat_template");
        }
        catch (CheckpointException e)
        {
            throw ApiException.BadRequest($"This model's chat template cannot be rendered: {e.Message}. Start the server with --chat-template qwen3|chatml, or use /v1/completions.", "messages", "unsupported_chat_template");
        }
    }
}
