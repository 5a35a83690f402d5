using TaH.Engine.Generation;
using TaH.Engine.TaH;
using TaH.Server.Output;

namespace TaH.Server.Api;

/// <summary>
/// The "tah" objects of one response: each chunk's or choice's depths and, for a budgeted
/// request, the depth-2 share each choice has reached so far beside its target; and usage.tah.
/// </summary>
internal sealed class DepthReport(IterationPolicy policy)
{
    private readonly Dictionary<int, DepthTally> _reached = [];

    /// <summary>A streamed chunk of choice <paramref name="index"/>: its tokens' depths, and the share reached up to its end.</summary>
    public TaHTokens Chunk(int index, IReadOnlyList<TokenEvent> tokens)
    {
        var tally = _reached.TryGetValue(index, out var t) ? t : _reached[index] = new DepthTally();
        foreach (var token in tokens)
        {
            tally.Add(token.Depth);
        }

        return Tokens(tokens, tally);
    }

    /// <summary>A whole choice.</summary>
    public TaHTokens Choice(IReadOnlyList<TokenEvent> tokens)
    {
        var tally = new DepthTally();
        foreach (var token in tokens)
        {
            tally.Add(token.Depth);
        }

        return Tokens(tokens, tally);
    }

    public TaHUsage Usage(DepthTally all) =>
        new(all.Depth2Tokens, Math.Round(all.Depth2Share, 6), Math.Round(all.AverageDepth, 6), policy.ToString(), policy.Budget?.TargetShare, policy.Budget?.MaxShare);

    private TaHTokens Tokens(IReadOnlyList<TokenEvent> tokens, DepthTally reached) =>
        policy.Budget is { } budget
            ? new TaHTokens([.. tokens.Select(t => t.Depth)], Math.Round(reached.Depth2Share, 6), budget.TargetShare)
            : new TaHTokens([.. tokens.Select(t => t.Depth)]);
}
