namespace TaH.Engine.TaH;

/// <summary>The paper's ablations, selectable per request for A/B comparison.</summary>
public enum PolicyKind
{
    /// <summary>The trained decider and its threshold (TaH).</summary>
    Decider,

    /// <summary>Always-1: every token stops after the first pass; the plain base model.</summary>
    Never,

    /// <summary>Always-2 ("AlwaysThink"): every token goes to the deepest level.</summary>
    Always,
}

/// <summary>
/// How deep tokens go: a policy, and for the decider an optional threshold override. A decider
/// with a <see cref="Rate"/> is for benchmarks on random weights, whose continue probabilities
/// mean nothing: the decider still runs (its cost is paid), but a position goes deeper when a
/// hash of (position, depth, token) falls below the rate, so the share is the rate whatever the
/// weights, and a recomputed or batched sequence decides the same. (The draw stands in for the
/// decider's probability, so thresholds and budgets act on it as on a trained decider's.)
/// A decider may carry a per-request <see cref="Budget"/> (a target and cap on the depth-2 share,
/// see <see cref="DepthBudget"/>), or be <see cref="Elastic"/>: its threshold was left to the
/// server, which may raise it under load (see <see cref="ElasticDepth"/>).
/// </summary>
public readonly record struct IterationPolicy(PolicyKind Kind, double? Threshold = null, double? Rate = null)
{
    /// <summary>The depth-2 budget of a decider request; null: no budget.</summary>
    public DepthBudgetSettings? Budget { get; init; }

    /// <summary>The request set neither a threshold nor a target share: elastic depth may raise its threshold.</summary>
    public bool Elastic { get; init; }

    /// <summary>The threshold a decider row compares with: its own, else 1 - rate for the emulated decider, else the trained one.</summary>
    public double ThresholdOr(double trained) => Threshold ?? (Rate is { } r ? 1 - r : trained);

    /// <summary>
    /// This decider with a depth budget; throws <see cref="ArgumentException"/> naming the field at
    /// fault (target_share, max_share) for a policy that cannot take one.
    /// </summary>
    public IterationPolicy WithBudget(DepthBudgetSettings budget)
    {
        if (Kind != PolicyKind.Decider)
        {
            throw new ArgumentException($"a depth budget applies only to the decider policy, not '{Kind.ToString().ToLowerInvariant()}'",
                budget.TargetShare is not null ? "target_share" : "max_share");
        }

        if (budget.TargetShare is not null && Threshold is not null)
        {
            throw new ArgumentException("target_share sets the threshold itself: give target_share or threshold, not both", "target_share");
        }

        return this with { Budget = budget };
    }

    public static IterationPolicy DeciderAtRate(double rate) =>
        double.IsNaN(rate) || rate < 0 || rate > 1
            ? throw new ArgumentException($"iteration rate {rate} is outside [0, 1]", nameof(rate))
            : new(PolicyKind.Decider, Rate: rate);

    public static IterationPolicy Decider => new(PolicyKind.Decider);

    public static IterationPolicy Never => new(PolicyKind.Never);

    public static IterationPolicy Always => new(PolicyKind.Always);

    public static IterationPolicy Parse(string name, double? threshold = null)
    {
        var kind = name.ToLowerInvariant() switch
        {
            "decider" or "tah" => PolicyKind.Decider,
            "never" or "always-1" => PolicyKind.Never,
            "always" or "always-2" => PolicyKind.Always,
            _ => throw new ArgumentException($"unknown policy '{name}' (expected decider, never or always)", nameof(name)),
        };
        if (threshold is { } t && (kind != PolicyKind.Decider || double.IsNaN(t) || t < 0 || t > 1))
        {
            throw new ArgumentException(
                kind != PolicyKind.Decider ? "a threshold applies only to the decider policy" : $"threshold {t} is outside [0, 1]",
                nameof(threshold));
        }

        return new IterationPolicy(kind, threshold);
    }

    public override string ToString()
    {
        if (Kind != PolicyKind.Decider)
        {
            return Kind == PolicyKind.Never ? "never" : "always";
        }

        var parts = new[]
        {
            Rate is { } r ? $"rate={r.ToString("0.####", System.Globalization.CultureInfo.InvariantCulture)}" : null,
            Threshold is { } t ? $"threshold={t.ToString("0.####", System.Globalization.CultureInfo.InvariantCulture)}" : null,
            Budget?.ToString(),
        }.OfType<string>().ToArray();
        return parts.Length == 0 ? "decider" : $"decider({string.Join(",", parts)})";
    }
}
