using System.Globalization;

namespace TaH.Engine.TaH;

/// <summary>
/// A request's compute budget for the second pass: the depth-2 share of its generated tokens to
/// aim at (<see cref="TargetShare"/>) and a hard cap (<see cref="MaxShare"/>). Either may be
/// left out; at least one is set.
/// </summary>
public sealed record DepthBudgetSettings
{
    private DepthBudgetSettings(double? targetShare, double? maxShare)
    {
        TargetShare = targetShare;
        MaxShare = maxShare;
    }

    public double? TargetShare { get; }

    public double? MaxShare { get; }

    /// <summary>Validates the pair; the exception's parameter name is the field at fault (target_share, max_share).</summary>
    public static DepthBudgetSettings Create(double? targetShare, double? maxShare)
    {
        if (targetShare is null && maxShare is null)
        {
            throw new ArgumentException("a depth budget needs target_share or max_share", "target_share");
        }

        if (targetShare is { } t && (double.IsNaN(t) || t < 0 || t > 1))
        {
            throw new ArgumentException($"target_share {Format(t)} is outside [0, 1]", "target_share");
        }

        if (maxShare is { } m && (double.IsNaN(m) || m < 0 || m > 1))
        {
            throw new ArgumentException($"max_share {Format(m)} is outside [0, 1]", "max_share");
        }

        if (targetShare > maxShare)
        {
            throw new ArgumentException($"target_share {Format(targetShare!.Value)} is above max_share {Format(maxShare!.Value)}", "max_share");
        }

        return new DepthBudgetSettings(targetShare, maxShare);
    }

    public override string ToString() =>
        string.Join(",", new[] { TargetShare is { } t ? $"target_share={Format(t)}" : null, MaxShare is { } m ? $"max_share={Format(m)}" : null }.OfType<string>());

    private static string Format(double v) => v.ToString("0.####", CultureInfo.InvariantCulture);
}

/// <summary>What the budget lets the next generated-token decision do.</summary>
public enum BudgetChoice
{
    /// <summary>Stay at depth 1, whatever the decider says.</summary>
    Stop,

    /// <summary>Take the second pass, whatever the decider says.</summary>
    Iterate,

    /// <summary>Iterate when the decider's probability exceeds <see cref="BudgetDecision.Threshold"/>.</summary>
    Decide,
}

public readonly record struct BudgetDecision(BudgetChoice Choice, double Threshold = double.NaN);

/// <summary>
/// One sequence's depth-2 budget controller. Decision k (0-based) is the one whose position's
/// logits give generated token k+1 its depth. With target share s, after k decisions of which d
/// went deeper, the deficit is D = s k - d. The controller keeps -1 &lt; D &lt; 1 after every
/// decision: it forces the second pass when staying would leave D + s above 1, forbids it when
/// taking it would leave D + s - 1 below -1, and otherwise lets the decider choose. So at any
/// moment, and whenever the sequence ends, the depth-2 tokens are within one token of s times
/// the tokens generated, and the budget is never spent ahead of time (at most one token ahead).
/// The cap m holds at every prefix: a decision never takes d + 1 above m (k + 1), before any
/// other rule.
/// <para>
/// Free decisions spend the second pass where the decider is most sure. Staying leaves L more
/// free decisions before the band forces a pass (L follows from D and s), so the controller
/// iterates when the probability beats the value of waiting: W_0 = E[p] (a forced pass takes
/// whatever comes), W_j = E[max(p, W_(j-1))], over the sequence's own recent probabilities: the
/// optimal stopping rule for giving the pass to the most likely-hard token of the window (behind
/// budget L is small and it becomes willing; ahead, it holds out). When max_tokens ends the
/// sequence before a pass is due, the pass is optional and goes to the tokens above the quantile
/// of the share owed, s (1 + D). Until it has seen <see cref="MinObservations"/> probabilities of
/// its own it decides at the caller's prior threshold, within the band: the engine passes the
/// one that share s of all sequences' recent probabilities exceeded (<see cref="DeciderPopulation"/>),
/// else the decider's own (trained, the request's, or 1 - rate for the bench's emulated
/// decider). With only a cap, free decisions always use the caller's threshold.
/// </para>
/// </summary>
public sealed class DepthBudget
{
    /// <summary>Own probabilities needed before the online quantile replaces the prior.</summary>
    public const int MinObservations = 8;

    /// <summary>Recent probabilities the quantile is taken over.</summary>
    public const int Window = 256;

    // Keeps the bounds strict under floating-point rounding of s (k + 1) (errors ~1e-16 k).
    private const double Margin = 1e-9;

    // The value of waiting converges well within this many steps ahead.
    private const int MaxLookahead = 1000;

    private readonly RecentQuantile _recent;

    public DepthBudget(DepthBudgetSettings settings)
    {
        Settings = settings;
        _recent = new RecentQuantile(Window);
    }

    private DepthBudget(DepthBudget other)
    {
        Settings = other.Settings;
        _recent = other._recent.Clone();
        Decisions = other.Decisions;
        Deep = other.Deep;
    }

    public DepthBudgetSettings Settings { get; }

    /// <summary>Generated-token decisions made (= tokens generated once each is sampled).</summary>
    public int Decisions { get; private set; }

    /// <summary>Decisions that took the second pass.</summary>
    public int Deep { get; private set; }

    /// <summary>s k - d: how many depth-2 tokens the sequence is behind its target (negative: ahead).</summary>
    public double Deficit => (Settings.TargetShare ?? 0) * Decisions - Deep;

    /// <summary>
    /// What the next decision may do. <paramref name="fallbackThreshold"/>: a cap-only budget's
    /// threshold, and a target's prior (until it has probabilities of its own); <paramref name="decisionsLeft"/>:
    /// decisions after this one that max_tokens still allows.
    /// </summary>
    public BudgetDecision Next(double fallbackThreshold, int decisionsLeft = int.MaxValue)
    {
        int k = Decisions;
        if (Settings.MaxShare is { } m && Deep + 1 > m * (k + 1))
        {
            return new BudgetDecision(BudgetChoice.Stop);
        }

        if (Settings.TargetShare is not { } s)
        {
            return new BudgetDecision(BudgetChoice.Decide, fallbackThreshold);
        }

        double next = (s * (k + 1)) - Deep; // D + s: the deficit if this decision stays at depth 1
        if (next > 1 - Margin)
        {
            return new BudgetDecision(BudgetChoice.Iterate);
        }

        if (next < Margin)
        {
            return new BudgetDecision(BudgetChoice.Stop);
        }

        // Until it has probabilities of its own, it decides as the decider it budgets.
        if (_recent.Count < MinObservations)
        {
            return new BudgetDecision(BudgetChoice.Decide, fallbackThreshold);
        }

        // Free decisions left after this one, were it to stay, before the band forces a pass.
        int left = (int)Math.Min(MaxLookahead, Math.Floor((1 - Margin - next) / s));
        if (left < decisionsLeft)
        {
            return new BudgetDecision(BudgetChoice.Decide, ValueOfWaiting(left));
        }

        // The sequence may end before a pass is due: an optional one, for the tokens above the
        // quantile of the share it is owed (more when behind, less when ahead).
        double share = Math.Clamp(s * (1 + Deficit), 0, 1);
        return new BudgetDecision(BudgetChoice.Decide, _recent.ThresholdFor(share)!.Value);
    }

    /// <summary>W_left: the probability a pass can expect if this decision stays and the best of the next ones is taken.</summary>
    private double ValueOfWaiting(int left)
    {
        double value = _recent.ExpectedExcess(0); // W_0 = E[p] (probabilities are >= 0): a forced pass takes what comes
        for (int j = 0; j < left; j++)
        {
            double gain = _recent.ExpectedExcess(value);
            if (gain < 1e-12)
            {
                break; // converged on the largest probability seen
            }

            value += gain;
        }

        return value;
    }

    /// <summary>The decision was made: whether it went deeper, and the decider's probability when it ran.</summary>
    public void Record(bool deeper, double? probability)
    {
        Decisions++;
        Deep += deeper ? 1 : 0;
        if (probability is { } p)
        {
            _recent.Add(p);
        }
    }

    /// <summary>An independent copy (a forked sample continues from the same state).</summary>
    public DepthBudget Clone() => new(this);
}
