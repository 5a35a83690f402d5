using TaH.Engine.TaH;

namespace TaH.Engine.Generation;

/// <summary>
/// How one sequence's positions choose their depth: the policy each row runs with, and what the
/// prefix cache may share. A plain policy decides the same every time. A budgeted sequence's
/// generated-token decisions come from its <see cref="DepthBudget"/>; its prompt positions before
/// the last stay at depth 1 (the budget covers the generated tokens; the decider was trained with
/// prompt positions easy, so their probabilities say little about the answer's), so target share
/// 0 runs exactly as <c>never</c>. An elastic sequence runs at the threshold elastic depth sets.
/// Decisions that depend on the moment (budget, raised threshold) are recorded, so a sequence
/// recomputed after preemption decides its old positions as before.
/// </summary>
internal sealed class DepthControl
{
    // Recorded depth-1 decisions.
    private const sbyte AsPolicy = 0, Stayed = 1, Went = 2;

    private readonly IterationPolicy _policy;
    private readonly ElasticDepth? _elastic;
    private readonly ElasticDepth? _observer;
    private readonly DeciderPopulation? _population;
    private readonly int _firstDecision;
    private readonly double _baseThreshold;
    private readonly int _maxTokens;
    private readonly bool _never;

    // Depth-1 decisions from position _recordFrom on (AsPolicy: adopted from the prefix cache).
    private readonly List<sbyte>? _record;
    private readonly int _recordFrom;

    private DepthControl(IterationPolicy policy, ElasticDepth? elastic, DeciderPopulation? population, int promptLength, int maxTokens, double baseThreshold, string? policyKey)
    {
        _policy = policy;
        _population = population;
        _maxTokens = maxTokens;
        _firstDecision = promptLength - 1;
        _baseThreshold = baseThreshold;
        PolicyKey = policyKey;
        var settings = policy.Budget;
        _never = settings is not null && (settings.TargetShare == 0 || settings.MaxShare == 0);
        Budget = settings is null || _never ? null : new DepthBudget(settings);
        _observer = policy.Elastic && policy.Kind == PolicyKind.Decider && !_never ? elastic : null;
        _elastic = _observer is { Enabled: true } ? _observer : null;
        if (Budget is not null)
        {
            (_record, _recordFrom) = ([], _firstDecision);
            KeyedPositions = _firstDecision;
        }
        else if (_elastic is not null)
        {
            (_record, _recordFrom) = ([], 0);
        }
    }

    private DepthControl(DepthControl other)
    {
        _policy = other._policy;
        _elastic = other._elastic;
        _observer = other._observer;
        _population = other._population;
        _firstDecision = other._firstDecision;
        _baseThreshold = other._baseThreshold;
        _maxTokens = other._maxTokens;
        _never = other._never;
        _record = other._record is null ? null : [.. other._record];
        _recordFrom = other._recordFrom;
        Budget = other.Budget?.Clone();
        PolicyKey = other.PolicyKey;
        KeyedPositions = other.KeyedPositions;
    }

    /// <summary>The sequence's budget controller, when it has one.</summary>
    public DepthBudget? Budget { get; }

    /// <summary>Which deeper entries the prefix cache files this sequence's under (null: it keeps none).</summary>
    public string? PolicyKey { get; }

    /// <summary>
    /// Leading positions whose decisions are those <see cref="PolicyKey"/> stands for: the prefix
    /// cache shares deeper entries (and reuses blocks) only below it.
    /// </summary>
    public int KeyedPositions { get; private set; } = int.MaxValue;

    public static DepthControl For(GenerationRequest request, TaHModel model, ElasticDepth? elastic, DeciderPopulation? population) =>
        For(request, model.MaxDepth, model.Decider?.Threshold ?? double.NaN, elastic, population);

    /// <summary>The same, from the model's depth and its decider's trained threshold (NaN without one).</summary>
    public static DepthControl For(GenerationRequest request, int maxDepth, double trained, ElasticDepth? elastic, DeciderPopulation? population)
    {
        var policy = request.Policy;
        bool iterates = maxDepth >= 2 && policy.Kind != PolicyKind.Never && !(policy.Budget is { } b && (b.TargetShare == 0 || b.MaxShare == 0));
        string? key = !iterates || policy.Budget is not null ? null
            : policy.Kind == PolicyKind.Always ? "always"
            : policy.Rate is { } rate ? $"decider-rate:{rate:R}:{policy.ThresholdOr(trained):R}"
            : $"decider:{policy.ThresholdOr(trained):R}";
        return new DepthControl(policy, elastic, population, request.PromptTokens.Count, request.MaxTokens, policy.ThresholdOr(trained), key);
    }

    /// <summary>The policy of the row at (<paramref name="position"/>, <paramref name="depth"/>) in the next step.</summary>
    public IterationPolicy RowPolicy(int position, int depth)
    {
        if (_never)
        {
            return IterationPolicy.Never;
        }

        if (depth > 1)
        {
            return Plain;
        }

        if (Recorded(position) is { } recorded)
        {
            return recorded switch { Went => IterationPolicy.Always, Stayed => IterationPolicy.Never, _ => Plain };
        }

        double threshold = _elastic?.RaisedThreshold is { } raised && raised > _baseThreshold ? raised : _baseThreshold;
        if (threshold > _baseThreshold)
        {
            KeyedPositions = Math.Min(KeyedPositions, position);
        }

        if (Budget is null)
        {
            return threshold > _baseThreshold ? Plain with { Threshold = threshold } : Plain;
        }

        if (position < _firstDecision)
        {
            return IterationPolicy.Never;
        }

        // Forced and forbidden decisions still run the decider, so the budget learns from every position.
        // Its first free decisions: at the engine's quantile for the target, once it has one.
        // Decisions left after this one: the tokens max_tokens still allows.
        double prior = Budget.Settings.TargetShare is { } share && _population?.ThresholdFor(share) is { } t ? t : threshold;
        var decision = Budget.Next(prior, _maxTokens - (position - _firstDecision) - 1);
        return Plain with
        {
            Threshold = decision.Choice switch
            {
                BudgetChoice.Iterate => -1,
                BudgetChoice.Stop => 1,
                _ => decision.Threshold,
            },
        };
    }

    /// <summary>A depth-1 row ran: whether it goes deeper, and the decider's probability when it ran.</summary>
    public void Decided(int position, bool deeper, double? probability)
    {
        if (_record is not null && position >= _recordFrom)
        {
            int index = position - _recordFrom;
            if (index < _record.Count)
            {
                return; // recomputed after preemption: decided as recorded
            }

            while (_record.Count < index)
            {
                _record.Add(AsPolicy);
            }

            _record.Add(deeper ? Went : Stayed);
        }

        if (position < _firstDecision)
        {
            return;
        }

        Budget?.Record(deeper, probability);
        if (probability is { } p)
        {
            _observer?.Observe(p);
            _population?.Observe(p);
        }
    }

    /// <summary>An independent copy for a forked sample.</summary>
    public DepthControl Clone() => new(this);

    /// <summary>The request's policy with its budget and elastic marks removed: what a row runs by default.</summary>
    private IterationPolicy Plain => new(_policy.Kind, _policy.Threshold, _policy.Rate);

    private sbyte? Recorded(int position)
    {
        int index = position - _recordFrom;
        return _record is not null && index >= 0 && index < _record.Count ? _record[index] : null;
    }
}
