using TaH.Engine.Generation;
using TaH.Engine.TaH;
using TaH.Server.Output;

namespace TaH.Server.Api;

/// <summary>One choice to generate: its engine request and text the output starts with.</summary>
/// <param name="Index">The choice's index in the response.</param>
/// <param name="Request">What the engine runs, admitted by its gate; the choices of one prompt share it.</param>
/// <param name="Echo">Text sent before the output as it is (completions' echo of the prompt).</param>
/// <param name="Prefill">Text the output continues (a continued assistant message), parsed with the output.</param>
public sealed record ChoiceSpec(int Index, AdmittedRequest Request, string? Echo = null, string? Prefill = null);

/// <summary>A validated request, ready to submit: data only, flowing one way to the engine.</summary>
public sealed record GenerationPlan(
    string Model,
    IReadOnlyList<ChoiceSpec> Choices,
    int PromptTokens,
    OutputOptions Output,
    IterationPolicy Policy,
    bool Stream,
    bool IncludeUsage,
    bool Logprobs,
    string? User);
