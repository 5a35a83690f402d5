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
/// weights, and a recomputed or batched sequence decides the same.
/// </summary>
public readonly record struct IterationPolicy(PolicyKind Kind, double? Threshold = null, double? Rate = null)
{
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

    public override string ToString() =>
        Kind switch
        {
            PolicyKind.Decider when Rate is { } r => $"decider(rate={r.ToString("0.####", System.Globalization.CultureInfo.InvariantCulture)})",
            PolicyKind.Decider when Threshold is { } t => $"decider(threshold={t.ToString("0.####", System.Globalization.CultureInfo.InvariantCulture)})",
            PolicyKind.Decider => "decider",
            PolicyKind.Never => "never",
            _ => "always",
        };
}
