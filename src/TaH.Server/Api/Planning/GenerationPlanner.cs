using TaH.Engine.Generation;
using TaH.Server.Api.Reading;
using TaH.Server.Hosting;
using TaH.Server.Output;

namespace TaH.Server.Api.Planning;

/// <summary>What an endpoint hands the shared planning: the body, and what it names or shapes its own way.</summary>
/// <param name="Body">The fields chat and text completions share.</param>
/// <param name="MaxTokens">max_tokens (or chat's max_completion_tokens) when set.</param>
/// <param name="DefaultMaxTokens">The output length of a request that sets none (clamped to what fits).</param>
/// <param name="Logprobs">Alternatives to report per token; null for none.</param>
/// <param name="Names">How the endpoint spells the engine's fields.</param>
/// <param name="Structured">The constraint the output must follow, if one was asked for.</param>
internal sealed record PlanInput(GenerationRequestBody Body, int? MaxTokens, int DefaultMaxTokens, int? Logprobs, WireNames Names, StructuredOutput? Structured);

/// <summary>One prompt to generate from, with the text sent before its output (completions' echo).</summary>
internal sealed record PlannedPrompt(IReadOnlyList<int> Tokens, string? Echo);

/// <summary>
/// The planning both endpoints share: the sampling knobs, policy and stops, one engine request per
/// prompt (its n samples share it), each admitted by the engine's gate, whose refusals become 400s
/// naming the field as the endpoint spells it.
/// </summary>
internal sealed class GenerationPlanner(ModelHost host)
{
    public GenerationPlan Plan(PlanInput p, IReadOnlyList<PlannedPrompt> prompts, string? prefill, Parsing parsing, string? user)
    {
        var body = p.Body;
        if (body.StreamOptions is not null && body.Stream != true)
        {
            throw ApiException.BadRequest("'stream_options' is only allowed when 'stream' is true.", "stream_options");
        }

        var served = host.Model;
        var policy = TaHOptionsReader.ReadPolicy(body.Tah, host.DefaultPolicy);
        var sampling = SamplingReader.Read(body, served.SamplingDefaults, p.Logprobs);
        var stops = StopReader.Read(body.Stop);
        StructuredOutputReader.CheckCompatible(p.Structured, stops);
        var names = p.Structured is { } structured ? p.Names with { Constraint = structured.Param } : p.Names;
        int n = body.N ?? 1;
        var choices = new List<ChoiceSpec>();
        int promptTokens = 0;
        for (int i = 0; i < prompts.Count; i++)
        {
            var tokens = prompts[i].Tokens;
            promptTokens += tokens.Count;
            var request = new GenerationRequest
            {
                PromptTokens = tokens,
                MaxTokens = p.MaxTokens ?? DefaultMaxTokens(served, p.DefaultMaxTokens, tokens.Count, n),
                Policy = policy,
                Sampling = sampling,
                StopTokenIds = body.StopTokenIds ?? [],
                IgnoreEos = body.IgnoreEos == true,
                N = n,
                Constraint = p.Structured?.Constraint,
            };
            AdmittedRequest admitted;
            try
            {
                admitted = host.Admission.Admit(request);
            }
            catch (InvalidRequestException e)
            {
                throw names.Refusal(e);
            }

            // Sample k of a prompt draws with seed + k.
            for (int k = 0; k < n; k++)
            {
                choices.Add(new ChoiceSpec((i * n) + k, admitted, prompts[i].Echo, prefill));
            }
        }

        return new GenerationPlan(
            host.ServedModelName,
            choices,
            promptTokens,
            new OutputOptions(stops, parsing.Reasoning, parsing.ToolCalls),
            policy,
            body.Stream == true,
            body.StreamOptions?.IncludeUsage == true,
            p.Logprobs is not null,
            user);
    }

    /// <summary>The default, clamped to the context and to what fits the KV pool; at least 1, so that the gate names what does not fit.</summary>
    private static int DefaultMaxTokens(ServedModel served, int preferred, int promptTokens, int n) =>
        Math.Max(1, Math.Min(preferred, Math.Min(served.MaxModelLength - promptTokens, served.Kv.MaxTokensFitting(promptTokens, n))));
}

/// <summary>Which parsers a choice's output goes through.</summary>
internal sealed record Parsing(bool Reasoning, bool ToolCalls);
