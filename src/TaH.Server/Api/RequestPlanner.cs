using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TaH.Engine.Checkpoints;
using TaH.Engine.Constraints;
using TaH.Engine.Generation;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Engine.Tokenization;
using TaH.Server.Hosting;
using TaH.Server.Output;

namespace TaH.Server.Api;

/// <summary>
/// Validates OpenAI requests and turns them into <see cref="GenerationPlan"/>s: messages through
/// the chat template and tokenizer, sampling knobs with the model's defaults, the TaH policy.
/// Every refusal is a 400 that names the parameter.
/// </summary>
public sealed class RequestPlanner(ModelHost host, ServerOptions options)
{
    private const int MaxStopStrings = 16;

    public GenerationPlan PlanChat(ChatCompletionRequest r)
    {
        CheckModel(r.Model);
        CheckUnsupported(r.LogitBias, null, null);
        if (r.Messages is not { Count: > 0 } messageParams)
        {
            throw ApiException.BadRequest("'messages' must be a non-empty list of messages.", "messages");
        }

        var messages = messageParams.Select(ReadMessage).ToList();
        var (tools, parseTools) = ReadTools(r.Tools, r.ToolChoice);

        bool? enableThinking = null;
        if (r.ChatTemplateKwargs?.TryGetValue("enable_thinking", out var thinking) == true)
        {
            enableThinking = thinking.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                JsonValueKind.Null => null,
                _ => throw ApiException.BadRequest("'chat_template_kwargs.enable_thinking' must be true or false.", "chat_template_kwargs.enable_thinking"),
            };
        }

        bool continueFinal = r.ContinueFinalMessage == true;
        if (continueFinal && r.AddGenerationPrompt == true)
        {
            throw ApiException.BadRequest("'continue_final_message' and 'add_generation_prompt' cannot both be true.", "continue_final_message");
        }

        if (continueFinal && messages[^1].Role != "assistant")
        {
            throw ApiException.BadRequest("'continue_final_message' needs the last message to be an assistant message.", "continue_final_message");
        }

        if (r.Echo == true && !continueFinal)
        {
            throw ApiException.Unsupported("echo", "'echo' applies only with 'continue_final_message' (it prepends the continued message).");
        }

        var constraint = StructuredOutputReader.ForChat(host.Constraints, r, allowThinking: options.ReasoningParser == "qwen3" && enableThinking != false);
        var template = ChatTemplateOrThrow();
        string prompt;
        try
        {
            prompt = template.Render(messages, tools, addGenerationPrompt: !continueFinal && r.AddGenerationPrompt != false, enableThinking);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(Clean(e), "messages");
        }

        string? prefill = null;
        if (continueFinal)
        {
            prompt = OpenFinalMessage(prompt, messages[^1].Content ?? string.Empty);
            prefill = r.Echo == true ? messages[^1].Content : null;
        }

        var promptTokens = host.Tokenizer.Encode(prompt);
        if (r.TopLogprobs is { } top && r.Logprobs != true)
        {
            throw ApiException.BadRequest("'top_logprobs' needs 'logprobs' to be true.", "top_logprobs");
        }

        if (r.TopLogprobs is < 0 or > SamplingParams.MaxLogprobs)
        {
            throw ApiException.BadRequest($"'top_logprobs' must be in [0, {SamplingParams.MaxLogprobs}], got {r.TopLogprobs}.", "top_logprobs");
        }

        int? logprobs = r.Logprobs == true ? r.TopLogprobs ?? 0 : null;
        string maxName = r.MaxCompletionTokens is not null ? "max_completion_tokens" : "max_tokens";
        var common = new CommonParams(r, r.MaxCompletionTokens ?? r.MaxTokens, maxName, options.DefaultMaxTokens, logprobs);
        return Plan(common, [(promptTokens, null)], "messages", prefill, new Parsing(options.ReasoningParser == "qwen3", parseTools), r.User, constraint);
    }

    public GenerationPlan PlanCompletion(CompletionRequest r)
    {
        CheckModel(r.Model);
        CheckUnsupported(r.LogitBias, r.Suffix, r.BestOf is { } b && b != (r.N ?? 1) ? b : null);
        var prompts = ReadPrompts(r.Prompt);
        if (r.Logprobs is < 0 or > SamplingParams.MaxLogprobs)
        {
            throw ApiException.BadRequest($"'logprobs' must be in [0, {SamplingParams.MaxLogprobs}], got {r.Logprobs}.", "logprobs");
        }

        if (r.Echo == true && r.Logprobs is not null)
        {
            throw ApiException.Unsupported("echo", "'echo' together with 'logprobs' (log-probabilities of the prompt) is not supported.");
        }

        var inputs = prompts.Select(p => (p.Tokens, r.Echo == true ? p.Text ?? host.Tokenizer.Decode(p.Tokens) : null)).ToList();
        var common = new CommonParams(r, r.MaxTokens, "max_tokens", 16, r.Logprobs);
        return Plan(common, inputs, "prompt", null, new Parsing(false, false), r.User, StructuredOutputReader.ForCompletion(host.Constraints, r));
    }

    /// <summary>The shared fields, and the ones the two endpoints name or shape differently.</summary>
    private sealed record CommonParams(GenerationRequestBody Body, int? MaxTokens, string MaxTokensName, int DefaultMaxTokens, int? Logprobs);

    private sealed record Parsing(bool Reasoning, bool ToolCalls);

    private GenerationPlan Plan(CommonParams p, IReadOnlyList<(IReadOnlyList<int> Tokens, string? Echo)> prompts, string promptParam, string? prefill, Parsing parsing, string? user, Constraint? constraint)
    {
        int n = p.Body.N ?? 1;
        if (n < 1 || n > options.MaxN)
        {
            throw ApiException.BadRequest($"'n' must be in [1, {options.MaxN}], got {n}.", "n");
        }

        if (p.Body.StreamOptions is not null && p.Body.Stream != true)
        {
            throw ApiException.BadRequest("'stream_options' is only allowed when 'stream' is true.", "stream_options");
        }

        var policy = ReadPolicy(p.Body.Tah);
        var sampling = ReadSampling(p);
        var stops = ReadStop(p.Body.Stop);
        StructuredOutputReader.CheckCompatible(constraint, stops);
        var stopIds = p.Body.StopTokenIds ?? [];
        int vocab = host.Model.Config.VocabSize;
        foreach (int id in stopIds)
        {
            if (id < 0 || id >= vocab)
            {
                throw ApiException.BadRequest($"'stop_token_ids' has {id}, outside the vocabulary (0..{vocab - 1}).", "stop_token_ids");
            }
        }

        if (p.MaxTokens is < 1)
        {
            throw ApiException.BadRequest($"'{p.MaxTokensName}' must be at least 1, got {p.MaxTokens}.", p.MaxTokensName);
        }

        var engine = host.Engine;
        int contextLength = engine.MaxModelLength;
        var choices = new List<ChoiceSpec>();
        int promptTokens = 0;
        for (int i = 0; i < prompts.Count; i++)
        {
            var tokens = prompts[i].Tokens;
            promptTokens += tokens.Count;
            if (tokens.Count == 0)
            {
                throw ApiException.BadRequest($"The prompt is empty.", promptParam);
            }

            if (tokens.Count >= contextLength)
            {
                throw ApiException.BadRequest(
                    $"This model's maximum context length is {contextLength} tokens, but the prompt has {tokens.Count} tokens (at least one must remain for the output). Shorten the {promptParam}.",
                    promptParam, "context_length_exceeded");
            }

            foreach (int t in tokens)
            {
                if (t < 0 || t >= vocab)
                {
                    throw ApiException.BadRequest($"Prompt token id {t} is outside the vocabulary (0..{vocab - 1}).", promptParam);
                }
            }

            // What fits the KV pool at every depth, and the context.
            int poolFit = engine.MaxTokensFitting(tokens.Count, n);
            int maxTokens;
            if (p.MaxTokens is { } asked)
            {
                if (tokens.Count + asked > contextLength)
                {
                    throw ApiException.BadRequest(
                        $"This model's maximum context length is {contextLength} tokens. However, you requested {tokens.Count + asked} tokens ({tokens.Count} in the {promptParam}, {asked} for the completion). Reduce the length of the {promptParam} or '{p.MaxTokensName}'.",
                        p.MaxTokensName, "context_length_exceeded");
                }

                if (asked > poolFit)
                {
                    throw ApiException.BadRequest(
                        $"'{p.MaxTokensName}' {asked} with a {tokens.Count}-token prompt needs more KV cache than this server's pool holds (at most {Math.Max(0, poolFit)} tokens for this prompt; the server's --kv-blocks sets the pool).",
                        p.MaxTokensName, "kv_cache_too_small");
                }

                maxTokens = asked;
            }
            else
            {
                maxTokens = Math.Min(p.DefaultMaxTokens, Math.Min(contextLength - tokens.Count, poolFit));
                if (maxTokens < 1)
                {
                    throw ApiException.BadRequest($"The {tokens.Count}-token prompt leaves no room in the KV pool for an answer.", promptParam, "kv_cache_too_small");
                }
            }

            // One request for the n samples of a prompt: the engine computes the prompt once and
            // forks it; sample k draws with seed + k.
            var request = new GenerationRequest
            {
                PromptTokens = tokens,
                MaxTokens = maxTokens,
                Policy = policy,
                Sampling = sampling,
                StopTokenIds = stopIds,
                IgnoreEos = p.Body.IgnoreEos == true,
                N = n,
                Constraint = constraint,
            };
            for (int k = 0; k < n; k++)
            {
                choices.Add(new ChoiceSpec(i * n + k, request, prompts[i].Echo, prefill));
            }
        }

        return new GenerationPlan(
            host.ServedModelName,
            choices,
            promptTokens,
            new OutputOptions(stops, parsing.Reasoning, parsing.ToolCalls),
            policy,
            p.Body.Stream == true,
            p.Body.StreamOptions?.IncludeUsage == true,
            p.Logprobs is not null,
            user);
    }

    private void CheckModel(string? model)
    {
        if (model is not null && model != host.ServedModelName)
        {
            throw ApiException.ModelNotFound(model, host.ServedModelName);
        }
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

    private IterationPolicy ReadPolicy(TaHRequestOptions? tah)
    {
        IterationPolicy policy;
        if (tah is null || (tah.Policy is null && tah.Threshold is null))
        {
            policy = host.DefaultPolicy;
        }
        else
        {
            try
            {
                policy = IterationPolicy.Parse(tah.Policy ?? (tah.Threshold is not null ? "decider" : host.DefaultPolicy.Kind.ToString()), tah.Threshold);
            }
            catch (ArgumentException e)
            {
                throw ApiException.BadRequest(Clean(e), e.ParamName == "threshold" ? "tah.threshold" : "tah.policy");
            }
        }

        if (host.Model.Supports(policy) is { } problem)
        {
            throw ApiException.BadRequest(problem, "tah.policy");
        }

        return policy;
    }

    private SamplingParams ReadSampling(CommonParams p)
    {
        var defaults = host.Model.Generation;
        var sampling = new SamplingParams
        {
            Temperature = (float)(p.Body.Temperature ?? defaults.Temperature ?? 1.0),
            TopP = (float)(p.Body.TopP ?? defaults.TopP ?? 1.0),
            TopK = p.Body.TopK ?? defaults.TopK ?? 0,
            MinP = (float)(p.Body.MinP ?? defaults.MinP ?? 0.0),
            PresencePenalty = (float)(p.Body.PresencePenalty ?? 0),
            FrequencyPenalty = (float)(p.Body.FrequencyPenalty ?? 0),
            RepetitionPenalty = (float)(p.Body.RepetitionPenalty ?? defaults.RepetitionPenalty ?? 1.0),
            Seed = p.Body.Seed,
            Logprobs = p.Logprobs,
        };
        try
        {
            sampling.Validate();
        }
        catch (ArgumentException e)
        {
            var param = e.ParamName == "logprobs" && p.MaxTokensName != "max_tokens" ? "top_logprobs" : e.ParamName;
            throw ApiException.BadRequest(Clean(e), param);
        }

        return sampling;
    }

    private static List<string> ReadStop(JsonElement? stop)
    {
        var list = new List<string>();
        switch (stop)
        {
            case null or { ValueKind: JsonValueKind.Null }:
                break;
            case { ValueKind: JsonValueKind.String } s:
                list.Add(s.GetString()!);
                break;
            case { ValueKind: JsonValueKind.Array } a:
                foreach (var item in a.EnumerateArray())
                {
                    if (item.ValueKind != JsonValueKind.String)
                    {
                        throw ApiException.BadRequest("'stop' must be a string or a list of strings.", "stop");
                    }

                    list.Add(item.GetString()!);
                }

                break;
            default:
                throw ApiException.BadRequest("'stop' must be a string or a list of strings.", "stop");
        }

        if (list.Count > MaxStopStrings)
        {
            throw ApiException.BadRequest($"'stop' has {list.Count} strings; at most {MaxStopStrings} are allowed.", "stop");
        }

        if (list.Any(s => s.Length == 0))
        {
            throw ApiException.BadRequest("'stop' strings must not be empty.", "stop");
        }

        return list;
    }

    private List<(IReadOnlyList<int> Tokens, string? Text)> ReadPrompts(JsonElement? prompt)
    {
        const string Shape = "'prompt' must be a string, a list of strings, a list of token ids or a list of lists of token ids.";
        var result = new List<(IReadOnlyList<int>, string?)>();
        switch (prompt)
        {
            case { ValueKind: JsonValueKind.String } s:
                result.Add((host.Tokenizer.Encode(s.GetString()!), s.GetString()));
                break;
            case { ValueKind: JsonValueKind.Array } a when a.GetArrayLength() > 0:
                var first = a[0].ValueKind;
                if (first == JsonValueKind.Number)
                {
                    result.Add((ReadIds(a, "prompt"), null));
                }
                else
                {
                    int i = 0;
                    foreach (var item in a.EnumerateArray())
                    {
                        if (item.ValueKind == JsonValueKind.String)
                        {
                            result.Add((host.Tokenizer.Encode(item.GetString()!), item.GetString()));
                        }
                        else if (item.ValueKind == JsonValueKind.Array)
                        {
                            result.Add((ReadIds(item, $"prompt[{i}]"), null));
                        }
                        else
                        {
                            throw ApiException.BadRequest(Shape, $"prompt[{i}]");
                        }

                        i++;
                    }
                }

                break;
            case null or { ValueKind: JsonValueKind.Null }:
                throw ApiException.BadRequest("'prompt' is required.", "prompt");
            default:
                throw ApiException.BadRequest(Shape, "prompt");
        }

        if (result.Count > options.MaxN)
        {
            throw ApiException.BadRequest($"'prompt' has {result.Count} prompts; at most {options.MaxN} per request.", "prompt");
        }

        return result;
    }

    private static int[] ReadIds(JsonElement array, string param)
    {
        var ids = new List<int>();
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out var id))
            {
                throw ApiException.BadRequest($"'{param}' must hold integer token ids only.", param);
            }

            ids.Add(id);
        }

        return [.. ids];
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

            calls = toolCalls.Select((c, j) => ReadToolCall(c, i, j)).ToList();
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

    private static ToolCall ReadToolCall(ToolCallParam c, int i, int j)
    {
        string param = $"messages[{i}].tool_calls[{j}]";
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

    private static (IReadOnlyList<JsonNode>? Tools, bool Parse) ReadTools(IReadOnlyList<JsonElement>? tools, JsonElement? toolChoice)
    {
        string choice = toolChoice switch
        {
            null or { ValueKind: JsonValueKind.Null } => tools is { Count: > 0 } ? "auto" : "none",
            { ValueKind: JsonValueKind.String } s when s.GetString() is "none" or "auto" or "required" => s.GetString()!,
            { ValueKind: JsonValueKind.Object } => "named", // forced calls: StructuredOutputReader
            _ => throw ApiException.BadRequest("'tool_choice' must be 'none', 'auto', 'required' or a named function.", "tool_choice"),
        };
        if (tools is not { Count: > 0 })
        {
            if (choice == "auto" && toolChoice is not null)
            {
                throw ApiException.BadRequest("'tool_choice' is set but 'tools' is empty.", "tool_choice");
            }

            return (null, false);
        }

        var nodes = new List<JsonNode>();
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

        return choice == "none" ? (null, false) : (nodes, true);
    }

    private ChatTemplate ChatTemplateOrThrow()
    {
        try
        {
            return host.Tokenizer.ChatTemplate
                ?? throw ApiException.BadRequest("This model has no chat template (tokenizer_config.json); use /v1/completions.", "messages", "no_chat_template");
        }
        catch (CheckpointException e)
        {
            throw ApiException.BadRequest($"This model's chat template cannot be rendered: {e.Message}. Start the server with --chat-template qwen3|chatml, or use /v1/completions.", "messages", "unsupported_chat_template");
        }
    }

    // The final assistant turn stays open: the model continues its text (vLLM's continue_final_message).
    private static string OpenFinalMessage(string rendered, string finalContent)
    {
        int end = rendered.LastIndexOf("<|im_end|>", StringComparison.Ordinal);
        if (end < 0 || !rendered[..end].EndsWith(finalContent, StringComparison.Ordinal))
        {
            throw ApiException.BadRequest("The final assistant message cannot be continued with this chat template.", "continue_final_message");
        }

        return rendered[..end];
    }

    private static string Clean(ArgumentException e) =>
        e.ParamName is { } name ? e.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : e.Message;
}
