namespace TaH.Engine.TaH;

/// <summary>
/// The decider's recent probabilities at generated-token decisions, over every sequence the
/// engine runs. A budgeted sequence that has seen few probabilities of its own takes its first
/// free decisions at the threshold that its target share of this population exceeds, instead
/// of the decider's trained threshold: with short answers those first decisions are most of the
/// answer, and the trained threshold would give every target the same share. Driven by the
/// engine's thread only.
/// </summary>
public sealed class DeciderPopulation
{
    /// <summary>Probabilities kept.</summary>
    public const int Window = 4096;

    /// <summary>Probabilities needed before the population's quantile is used.</summary>
    public const int MinObservations = 64;

    private readonly RecentQuantile _recent = new(Window);

    public int Count => _recent.Count;

    public void Observe(double probability) => _recent.Add(probability);

    /// <summary>The threshold that <paramref name="share"/> of the population exceeded, or null while it has seen too few.</summary>
    public double? ThresholdFor(double share) => _recent.Count < MinObservations ? null : _recent.ThresholdFor(share);
}
