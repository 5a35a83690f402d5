using System.Text;
using System.Text.Json.Nodes;
using TaH.Engine.Checkpoints;

namespace TaH.Engine.Tokenization;

/// <summary>
/// Renders a conversation into the prompt text a model was trained on. There is no Jinja engine
/// for .NET, so each supported template family is written out by hand and recognised by its
/// Jinja text; <see cref="ForFamily"/> picks a family by name instead.
/// </summary>
public abstract class ChatTemplate
{
    // What closes a message: both families are ChatML.
    private const string EndOfTurn = "<|im_end|>";

    private static readonly string[] Roles = ["system", "user", "assistant", "tool"];

    /// <summary>The names <see cref="ForFamily"/> accepts.</summary>
    public static IReadOnlyList<string> SupportedFamilies { get; } = ["qwen3", "chatml"];

    /// <summary>The family name: "qwen3" or "chatml".</summary>
    public abstract string Family { get; }

    /// <summary>
    /// Renders the conversation. <paramref name="tools"/> are OpenAI tool objects (rendered with
    /// tojson where the template shows them); <paramref name="enableThinking"/> false asks a
    /// thinking model to answer without reasoning, null leaves the template's default.
    /// Throws <see cref="ArgumentException"/> for an empty conversation or an unknown role.
    /// </summary>
    public abstract string Render(
        IReadOnlyList<ChatMessage> messages,
        IReadOnlyList<JsonNode>? tools = null,
        bool addGenerationPrompt = false,
        bool? enableThinking = null);

    /// <summary>
    /// Renders the conversation with its final message, an assistant one, left open: the model
    /// continues that text (vLLM's <c>continue_final_message</c>). Throws
    /// <see cref="ArgumentException"/> when the last message is not the assistant's, or the
    /// template does not end it with its text and the end-of-turn marker.
    /// </summary>
    public string RenderContinuingFinal(
        IReadOnlyList<ChatMessage> messages,
        IReadOnlyList<JsonNode>? tools = null,
        bool? enableThinking = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (messages.Count == 0 || messages[^1]?.Role != "assistant")
        {
            throw new ArgumentException("continuing the final message needs the last message to be an assistant message", nameof(messages));
        }

        string rendered = Render(messages, tools, addGenerationPrompt: false, enableThinking);
        int end = rendered.LastIndexOf(EndOfTurn, StringComparison.Ordinal);
        if (end < 0 || !rendered.AsSpan(0, end).EndsWith(messages[^1].Content ?? string.Empty, StringComparison.Ordinal))
        {
            throw new ArgumentException("the final assistant message cannot be continued with this chat template", nameof(messages));
        }

        return rendered[..end];
    }

    /// <summary>A template family by name ("qwen3", "chatml"; case-insensitive).</summary>
    public static ChatTemplate ForFamily(string family)
    {
        ArgumentNullException.ThrowIfNull(family);
        return family.Trim().ToLowerInvariant() switch
        {
            "qwen3" => new Qwen3ChatTemplate(),
            "chatml" => new ChatMlChatTemplate(),
            _ => throw new ArgumentException(
                $"unknown chat template family '{family}' (supported: {string.Join(", ", SupportedFamilies)})", nameof(family)),
        };
    }

    /// <summary>
    /// Recognises the family of a Jinja chat template (compared with the known templates with all
    /// white space removed). Throws <see cref="CheckpointException"/> naming
    /// <paramref name="sourcePath"/> when there is no template or it is not a supported one.
    /// </summary>
    public static ChatTemplate FromJinja(string? templateText, string sourcePath)
    {
        if (string.IsNullOrWhiteSpace(templateText))
        {
            throw new CheckpointException(sourcePath, "has no chat template");
        }
        var key = Canonical(templateText);
        if (key == Canonical(Qwen3ChatTemplate.JinjaSource))
        {
            return new Qwen3ChatTemplate();
        }
        if (ChatMlChatTemplate.JinjaSources.Any(s => Canonical(s) == key))
        {
            return new ChatMlChatTemplate();
        }
        throw new CheckpointException(sourcePath,
            $"chat template is not supported: it is none of the known templates (supported: {string.Join(", ", SupportedFamilies)}); " +
            "choose a family explicitly to render it as one of them");
    }

    /// <summary>Checks what every family needs: a non-empty conversation of known roles.</summary>
    protected static void Validate(IReadOnlyList<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (messages.Count == 0)
        {
            throw new ArgumentException("the conversation has no messages", nameof(messages));
        }
        for (var i = 0; i < messages.Count; i++)
        {
            var m = messages[i] ?? throw new ArgumentException($"message {i} is null", nameof(messages));
            if (m.Role is null || Array.IndexOf(Roles, m.Role) < 0)
            {
                throw new ArgumentException(
                    $"message {i} has role '{m.Role}'; the roles are {string.Join(", ", Roles)}", nameof(messages));
            }
        }
    }

    // White space outside the template's strings only steers Jinja's trimming, and all the known
    // templates trim it away; dropping all of it also tolerates reindented copies.
    private static string Canonical(string template)
    {
        var sb = new StringBuilder(template.Length);
        foreach (var c in template)
        {
            if (!char.IsWhiteSpace(c))
            {
                sb.Append(c);
            }
        }
        return sb.ToString();
    }
}
