using TaH.Engine.TaH;

namespace TaH.Server.Api.Reading;

/// <summary>
/// The request's <c>tah</c> object as an <see cref="IterationPolicy"/>: the policy, a threshold
/// override, a depth budget (<c>target_share</c>, <c>max_share</c>), and whether the threshold was
/// left to the server (then <c>--elastic-depth</c> may raise it under load: a request's own
/// threshold or target share wins). Whether the model can run it is the admission gate's check.
/// </summary>
internal static class TaHOptionsReader
{
    public static IterationPolicy ReadPolicy(TaHRequestOptions? tah, IterationPolicy serverDefault)
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
            throw ApiException.BadRequest(ApiException.Clean(e), $"tah.{e.ParamName switch { "name" => "policy", null => "policy", var p => p }}");
        }

        bool ownThreshold = tah?.Threshold is not null || policy.Budget?.TargetShare is not null;
        return policy.Kind == PolicyKind.Decider && !ownThreshold ? policy with { Elastic = true } : policy;
    }
}
