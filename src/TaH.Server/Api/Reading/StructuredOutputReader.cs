using System.Text.Json;
using TaH.Engine.Constraints;

namespace TaH.Server.Api.Reading;

/// <summary>A compiled constraint, and the parameter that asked for it (what a refusal of it names).</summary>
internal sealed record StructuredOutput(Constraint Constraint, string Param);

/// <summary>
/// Reads what a request asks its output to follow and compiles it (through the model's cached
/// <see cref="ConstraintCompiler"/>): OpenAI's <c>response_format</c> (<c>json_object</c>,
/// <c>json_schema</c>), a forced <c>tool_choice</c> (<c>required</c>, a named function, as
/// <see cref="ToolReader"/> reads it), and vLLM's <c>structured_outputs</c> and <c>guided_json</c> /
/// <c>guided_regex</c> / <c>guided_choice</c>. At most one may be given. What cannot be enforced is
/// a 400 naming it, never an unconstrained output.
/// </summary>
internal static class StructuredOutputReader
{
    /// <summary>The constraint of a chat request, or null. <paramref name="allowThinking"/>: the output may open with a think block first.</summary>
    public static StructuredOutput? ForChat(ConstraintCompiler compiler, ChatCompletionRequest r, ForcedCalls? forced, bool allowThinking)
    {
        var asked = Common(compiler, r, r.ResponseFormat, allowThinking);
        if (forced is not null)
        {
            asked.Add(new("tools", () => compiler.ToolCalls(forced.Tools, forced.Multiple, allowThinking)));
        }

        var structured = One(asked);
        if (structured is not null && r.ContinueFinalMessage == true)
        {
            throw ApiException.Unsupported("continue_final_message", "'continue_final_message' cannot be combined with structured outputs (the continued text is not checked against the constraint).");
        }

        return structured;
    }

    /// <summary>The constraint of a text completion request, or null.</summary>
    public static StructuredOutput? ForCompletion(ConstraintCompiler compiler, CompletionRequest r) => One(Common(compiler, r, r.ResponseFormat, allowThinking: false));

    /// <summary>Refuses what would break a constrained output: a stop string could cut it short.</summary>
    public static void CheckCompatible(StructuredOutput? structured, IReadOnlyList<string> stops)
    {
        if (structured is not null && stops.Count > 0)
        {
            throw ApiException.Unsupported("stop", "'stop' cannot be combined with structured outputs: a stop string could cut the output short of being valid.");
        }
    }

    private sealed record Asked(string Param, Func<Constraint> Compile);

    private static List<Asked> Common(ConstraintCompiler compiler, GenerationRequestBody r, ResponseFormat? format, bool allowThinking)
    {
        var asked = new List<Asked>();
        switch (format?.Type)
        {
            case null or "text":
                break;
            case "json_object":
                asked.Add(new("response_format", () => compiler.JsonObject(allowThinking)));
                break;
            case "json_schema":
                {
                    if (format.JsonSchema is not { ValueKind: JsonValueKind.Object } spec)
                    {
                        throw ApiException.BadRequest("'response_format.json_schema' must be an object {\"name\": ..., \"schema\": {...}}.", "response_format");
                    }

                    if (!spec.TryGetProperty("schema", out var schema) || schema.ValueKind is not (JsonValueKind.Object or JsonValueKind.True or JsonValueKind.False))
                    {
                        throw ApiException.BadRequest("'response_format.json_schema.schema' must be a JSON Schema object.", "response_format");
                    }

                    string text = schema.GetRawText();
                    asked.Add(new("response_format", () => compiler.JsonSchema(text, allowThinking)));
                    break;
                }

            default:
                throw ApiException.Unsupported("response_format", $"response_format type '{format.Type}' is not supported (text, json_object and json_schema are).");
        }

        if (r.StructuredOutputs is { ValueKind: not JsonValueKind.Null } so)
        {
            asked.Add(FromStructuredOutputs(compiler, so, allowThinking));
        }

        if (r.GuidedJson is { ValueKind: not JsonValueKind.Null } json)
        {
            string text = SchemaText(json, "guided_json");
            asked.Add(new("guided_json", () => compiler.JsonSchema(text, allowThinking)));
        }

        if (r.GuidedRegex is { ValueKind: not JsonValueKind.Null } regex)
        {
            string pattern = regex.ValueKind == JsonValueKind.String ? regex.GetString()! : throw ApiException.BadRequest("'guided_regex' must be a string.", "guided_regex");
            asked.Add(new("guided_regex", () => compiler.Regex(pattern, allowThinking)));
        }

        if (r.GuidedChoice is { ValueKind: not JsonValueKind.Null } choice)
        {
            var choices = Choices(choice, "guided_choice");
            asked.Add(new("guided_choice", () => compiler.Choice(choices, allowThinking)));
        }

        if (r.GuidedGrammar is { ValueKind: not JsonValueKind.Null })
        {
            throw ApiException.Unsupported("guided_grammar", "Grammars (EBNF, Lark) are not supported; use guided_json, guided_regex or guided_choice.");
        }

        if (r.GuidedWhitespacePattern is { ValueKind: not JsonValueKind.Null })
        {
            throw ApiException.Unsupported("guided_whitespace_pattern", "'guided_whitespace_pattern' is not supported: JSON whitespace is fixed (bounded) by the server.");
        }

        return asked;
    }

    private static Asked FromStructuredOutputs(ConstraintCompiler compiler, JsonElement so, bool allowThinking)
    {
        const string Param = "structured_outputs";
        if (so.ValueKind != JsonValueKind.Object)
        {
            throw ApiException.BadRequest("'structured_outputs' must be an object such as {\"json\": {...}}.", Param);
        }

        var asked = new List<Asked>();
        foreach (var field in so.EnumerateObject())
        {
            if (field.Value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }

            switch (field.Name)
            {
                case "json":
                    {
                        string text = SchemaText(field.Value, "structured_outputs.json");
                        asked.Add(new(Param, () => compiler.JsonSchema(text, allowThinking)));
                        break;
                    }

                case "regex":
                    {
                        string pattern = field.Value.ValueKind == JsonValueKind.String ? field.Value.GetString()! : throw ApiException.BadRequest("'structured_outputs.regex' must be a string.", Param);
                        asked.Add(new(Param, () => compiler.Regex(pattern, allowThinking)));
                        break;
                    }

                case "choice":
                    {
                        var choices = Choices(field.Value, "structured_outputs.choice");
                        asked.Add(new(Param, () => compiler.Choice(choices, allowThinking)));
                        break;
                    }

                case "json_object":
                    if (field.Value.ValueKind == JsonValueKind.True)
                    {
                        asked.Add(new(Param, () => compiler.JsonObject(allowThinking)));
                    }

                    break;
                case "grammar" or "structural_tag" or "whitespace_pattern":
                    throw ApiException.Unsupported($"{Param}.{field.Name}", $"'structured_outputs.{field.Name}' is not supported (json, regex, choice and json_object are).");
                case "disable_fallback" or "disable_any_whitespace" or "disable_additional_properties":
                    break; // what these ask for is always so here: no fallback, bounded whitespace, no unasked-for properties
                default:
                    throw ApiException.BadRequest($"'structured_outputs.{field.Name}' is not a field of structured_outputs (json, regex, choice, json_object).", Param);
            }
        }

        return asked.Count switch
        {
            0 => throw ApiException.BadRequest("'structured_outputs' names no constraint (json, regex, choice or json_object).", Param),
            1 => asked[0],
            _ => throw ApiException.BadRequest("'structured_outputs' may hold only one of json, regex, choice and json_object.", Param),
        };
    }

    private static StructuredOutput? One(List<Asked> asked)
    {
        if (asked.Count == 0)
        {
            return null;
        }

        if (asked.Count > 1)
        {
            throw ApiException.BadRequest($"Only one structured output may be asked for at a time; '{asked[0].Param}' and '{asked[1].Param}' both are.", asked[1].Param);
        }

        try
        {
            return new StructuredOutput(asked[0].Compile(), asked[0].Param);
        }
        catch (ConstraintException e)
        {
            throw e.Error == ConstraintError.Unsupported
                ? ApiException.Unsupported(asked[0].Param, e.Message)
                : ApiException.BadRequest(e.Message, asked[0].Param);
        }
    }

    private static string SchemaText(JsonElement value, string param) => value.ValueKind switch
    {
        JsonValueKind.Object or JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
        JsonValueKind.String => value.GetString()!,
        _ => throw ApiException.BadRequest($"'{param}' must be a JSON Schema (an object, or its JSON text).", param.Split('.')[0]),
    };

    private static List<string> Choices(JsonElement value, string param)
    {
        if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() == 0 || value.EnumerateArray().Any(c => c.ValueKind != JsonValueKind.String))
        {
            throw ApiException.BadRequest($"'{param}' must be a non-empty list of strings.", param.Split('.')[0]);
        }

        return [.. value.EnumerateArray().Select(c => c.GetString()!)];
    }
}
