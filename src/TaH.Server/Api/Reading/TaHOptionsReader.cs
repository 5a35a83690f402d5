using TaH.Engine.TaH;

namespace TaH.Server.Api.Reading;

/// <summary>The <c>tah</c> object of a request: the iteration policy and the decider's threshold.</summary>
internal static class TaHOptionsReader
{
    public static IterationPolicy ReadPolicy(TaHRequestOptions? tah, IterationPolicy serverDefault)
    {
        if (tah is null || (tah.Policy is null && tah.Threshold is null))
        {
            return serverDefault;
        }

        try
        {
            return IterationPolicy.Parse(tah.Policy ?? (tah.Threshold is not null ? "decider" : serverDefault.Kind.ToString()), tah.Threshold);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(ApiException.Clean(e), e.ParamName == "threshold" ? "tah.threshold" : "tah.policy");
        }
    }
}
