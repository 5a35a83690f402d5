using TaH.Engine.TaH;

namespace TaH.Server.Api;

/// <summary>
/// The request's <c>"tah"</c> object as an <see cref="IterationPolicy"/>: the policy, a threshold
/// override, a depth budget (<c>target_share</c>, <c>max_share</c>), and whether the threshold was
/// left to the server (then <c>--elastic-depth</c> may raise it under load: a request's own
/// threshold or target share wins). Refusals are 400s naming the field.
/// </summary>
internal static class TaHRequestReader
{
    public static IterationPolicy Read(TaHRequestOptions? tah, IterationPolicy serverDefault, TaHModel model)
    {
        IterationPolicy policy;
        try
        {
            bool budget = tah?.TargetShare is not null || tah?.MaxShare is not null;
            policy = tah?.Policy is { } name ? IterationPolicy.Parse(name, tah.Threshold)
                : tah?.Threshold is { } threshold ? IterationPolicy.Parse("decider", threshold)
                : budget && serverDefault.Kind != PolicyKind.Decider ? IterationPolicy.Decider
                : serverDefault;
            if (budget)
            {
                // A target sets the threshold itself: the server's default threshold gives way (the request's own is refused).
                var start = tah!.TargetShare is not null && tah.Threshold is null ? policy with { Threshold = null } : policy;
                policy = start.WithBudget(DepthBudgetSettings.Create(tah.TargetShare, tah.MaxShare));
            }
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(Clean(e), $"tah.{e.ParamName switch { "name" => "policy", null => "policy", var p => p }}");
        }

        if (model.Supports(policy) is { } problem)
        {
            throw ApiException.BadRequest(problem, "tah.policy");
        }

        bool ownThreshold = tah?.Threshold is not null || policy.Budget?.TargetShare is not null;
        return policy.Kind == PolicyKind.Decider && !ownThreshold ? policy with { Elastic = true } : policy;
    }

    private static string Clean(ArgumentException e) =>
        e.ParamName is { } name ? e.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : e.Message;
}
