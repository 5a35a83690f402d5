using System.Text.Json;
using TaH.Server.Api.Reading;
using TaH.Server.Hosting;

namespace TaH.Server.Api.Planning;

/// <summary>
/// Turns OpenAI requests into <see cref="GenerationPlan"/>s: each field through its reader
/// (Api/Reading), a conversation through the chat template and the tokenizer, then the shared
/// planning and the engine's admission (<see cref="GenerationPlanner"/>). Every refusal is a 4xx
/// that names the parameter.
/// </summary>
public sealed class RequestPlanner(ModelHost host, ServerOptions options)
{
    private readonly GenerationPlanner _planner = new(host);

    public GenerationPlan PlanChat(ChatCompletionRequest r)
    {
        host.RequireModel(r.Model);
        CheckUnsupported(r.LogitBias, null, null);
        var messages = MessageReader.Read(r.Messages);
        if (messages.Count * 2 > host.Model.MaxModelLength)
        {
            // Both templates open and close every message with a special token: that many
            // cannot fit, so they are not rendered and tokenized first to find out.
            throw ApiException.BadRequest(
                $"This model's maximum context length is {host.Model.MaxModelLength} tokens, and {messages.Count} messages take at least {messages.Count * 2}.",
                "messages", "context_length_exceeded");
        }

        var tools = ToolReader.Read(r.Tools, r.ToolChoice, r.ParallelToolCalls);
        var rendering = ChatRendering.Read(r.ChatTemplateKwargs, r.ContinueFinalMessage, r.AddGenerationPrompt);
        if (r.Echo == true && !rendering.ContinueFinal)
        {
            throw ApiException.Unsupported("echo", "'echo' applies only with 'continue_final_message' (it prepends the continued message).");
        }

        // A thinking model may open its output with a think block before what the constraint asks for.
        var structured = StructuredOutputReader.ForChat(host.Constraints, r, tools.Forced, allowThinking: options.ReasoningParser == "qwen3" && rendering.EnableThinking != false);

        var promptTokens = host.Tokenizer.Encode(ChatPrompt.Render(host.Tokenizer, messages, tools, rendering));
        if (r.TopLogprobs is not null && r.Logprobs != true)
        {
            throw ApiException.BadRequest("'top_logprobs' needs 'logprobs' to be true.", "top_logprobs");
        }

        string? prefill = rendering.ContinueFinal && r.Echo == true ? messages[^1].Content : null;
        string maxName = r.MaxCompletionTokens is not null ? "max_completion_tokens" : "max_tokens";
        var input = new PlanInput(r, r.MaxCompletionTokens ?? r.MaxTokens, options.DefaultMaxTokens, r.Logprobs == true ? r.TopLogprobs ?? 0 : null, WireNames.Chat(maxName), structured);
        return _planner.Plan(input, [new PlannedPrompt(promptTokens, null)], prefill, new Parsing(options.ReasoningParser == "qwen3", tools.ParseCalls), r.User);
    }

    public GenerationPlan PlanCompletion(CompletionRequest r)
    {
        host.RequireModel(r.Model);
        CheckUnsupported(r.LogitBias, r.Suffix, r.BestOf is { } b && b != (r.N ?? 1) ? b : null);
        if (r.Echo == true && r.Logprobs is not null)
        {
            throw ApiException.Unsupported("echo", "'echo' together with 'logprobs' (log-probabilities of the prompt) is not supported.");
        }

        var prompts = PromptReader.Read(r.Prompt, host.Tokenizer, options.MaxN)
            .Select(p => new PlannedPrompt(p.Tokens, r.Echo == true ? p.Text ?? host.Tokenizer.Decode(p.Tokens) : null))
            .ToList();
        // OpenAI's default output length for a completion.
        var input = new PlanInput(r, r.MaxTokens, 16, r.Logprobs, WireNames.Completion, StructuredOutputReader.ForCompletion(host.Constraints, r));
        return _planner.Plan(input, prompts, null, new Parsing(false, false), r.User);
    }

    private static void CheckUnsupported(JsonElement? logitBias, string? suffix, int? bestOf)
    {
        if (logitBias is { ValueKind: JsonValueKind.Object } bias && bias.EnumerateObject().Any())
        {
            throw ApiException.Unsupported("logit_bias", "'logit_bias' is not supported by this server.");
        }

        if (!string.IsNullOrEmpty(suffix))
        {
            throw ApiException.Unsupported("suffix", "'suffix' is not supported by this server.");
        }

        if (bestOf is { } b)
        {
            throw ApiException.Unsupported("best_of", $"'best_of' {b} is not supported (only best_of equal to n).");
        }
    }
}
