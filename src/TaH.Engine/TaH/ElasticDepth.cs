using System.Globalization;

namespace TaH.Engine.TaH;

public sealed record ElasticDepthOptions
{
    /// <summary>Raise thresholds under load; off: only watch and report.</summary>
    public bool Enabled { get; init; }

    /// <summary>The lowest depth-2 share it lowers requests to.</summary>
    public double MinShare { get; init; } = 0.01;

    /// <summary>How long pressure (or calm) must last before the next step down (or the return).</summary>
    public TimeSpan Interval { get; init; } = TimeSpan.FromSeconds(0.5);

    /// <summary>Share of the KV pool held by sequences from which the pool counts as nearly full.</summary>
    public double KvPressure { get; init; } = 0.9;

    /// <summary>Recent decider probabilities the thresholds are taken from.</summary>
    public int Window { get; init; } = 2048;

    public void Validate()
    {
        if (double.IsNaN(MinShare) || MinShare < 0 || MinShare > 1)
        {
            throw new ArgumentException($"--elastic-min-share {MinShare.ToString(CultureInfo.InvariantCulture)} is outside [0, 1]");
        }

        if (Interval < TimeSpan.Zero || double.IsNaN(KvPressure) || KvPressure <= 0 || KvPressure > 1 || Window < 1)
        {
            throw new ArgumentException("elastic depth: the interval must be >= 0, the KV pressure in (0, 1] and the window >= 1");
        }
    }
}

/// <summary>What the engine looks like at a step boundary, as far as load goes.</summary>
public readonly record struct LoadSignal(int Waiting, int Running, int HeldBlocks, int TotalBlocks);

/// <summary>
/// Where elastic depth stands: <see cref="Level"/> 0 is the trained (default) threshold; each
/// level above halves the depth-2 share default requests aim at, down to the floor.
/// </summary>
public sealed record ElasticState(int Level, double Threshold, double TargetShare, string Reason)
{
    public bool Raised => Level > 0;
}

/// <summary>
/// Thinking that yields under load (<c>--elastic-depth</c>): one server-wide controller over the
/// requests that left the threshold to the server (set neither <c>threshold</c> nor
/// <c>target_share</c>). While requests wait for admission or the KV pool is nearly full, it steps
/// down every <see cref="ElasticDepthOptions.Interval"/>: the share those requests aim at halves
/// (from the share the default threshold gives, measured over their recent decisions) down to
/// <see cref="ElasticDepthOptions.MinShare"/>, and their threshold becomes the one that share of
/// their recent decider probabilities exceeded (never below the default). Once the pressure has
/// been gone for an interval, or nothing runs, it returns to the default threshold at once. It is
/// driven by the engine's thread; <see cref="Current"/> may be read from any thread.
/// </summary>
public sealed class ElasticDepth
{
    private readonly RecentQuantile _recent;
    private volatile ElasticState _state;
    private double _naturalShare;
    private double _shareNow;
    private TimeSpan? _pressureSince;
    private TimeSpan? _calmSince;
    private TimeSpan _lastChange;

    public ElasticDepth(ElasticDepthOptions options, double baseThreshold)
    {
        options.Validate();
        Options = options;
        BaseThreshold = baseThreshold;
        _recent = new RecentQuantile(options.Window);
        _state = new ElasticState(0, baseThreshold, 0, "start");
    }

    public ElasticDepthOptions Options { get; }

    public bool Enabled => Options.Enabled;

    /// <summary>The threshold of the server's default policy (trained, or --threshold).</summary>
    public double BaseThreshold { get; }

    public ElasticState Current
    {
        get
        {
            var state = _state;
            return state.Raised ? state : state with { TargetShare = Volatile.Read(ref _shareNow) };
        }
    }

    /// <summary>The threshold to use instead of a governed sequence's own, or null at level 0.</summary>
    public double? RaisedThreshold => _state is { Raised: true } s ? s.Threshold : null;

    /// <summary>Raised for every change of level (on the engine's thread): the state before and after.</summary>
    public event Action<ElasticState, ElasticState>? Changed;

    /// <summary>A governed sequence's decider probability at a generated-token decision.</summary>
    public void Observe(double probability)
    {
        _recent.Add(probability);
        Volatile.Write(ref _shareNow, _recent.ShareAbove(BaseThreshold));
    }

    /// <summary>Called at every step boundary with the engine's load; moves at most one level.</summary>
    public void Update(LoadSignal load, TimeSpan now)
    {
        bool pressure = load.Waiting > 0 || (load.TotalBlocks > 0 && load.HeldBlocks >= Options.KvPressure * load.TotalBlocks);
        _pressureSince = pressure ? _pressureSince ?? now : null;
        _calmSince = pressure ? null : _calmSince ?? now;
        if (!Enabled)
        {
            return;
        }

        var state = _state;
        if (!pressure && state.Raised && (load.Running == 0 || now - _calmSince >= Options.Interval))
        {
            Move(0, load.Running == 0 ? "idle" : "load eased", now);
        }
        else if (pressure && now - Max(_pressureSince!.Value, _lastChange) >= Options.Interval)
        {
            if (!state.Raised)
            {
                _naturalShare = _recent.ShareAbove(BaseThreshold);
            }

            if (ShareAt(state.Level + 1) < ShareAt(state.Level))
            {
                Move(state.Level + 1, load.Waiting > 0 ? $"{load.Waiting} requests waiting" : $"KV pool {(double)load.HeldBlocks / load.TotalBlocks:P0} held", now);
            }
        }
    }

    /// <summary>The share level k aims at: the default's, halved k times, not below the floor.</summary>
    private double ShareAt(int level) =>
        level == 0 ? _naturalShare : Math.Min(_naturalShare, Math.Max(Options.MinShare, _naturalShare / Math.Pow(2, level)));

    private void Move(int level, string reason, TimeSpan now)
    {
        var before = Current;
        double share = ShareAt(level);
        double threshold = level == 0 ? BaseThreshold : Math.Max(BaseThreshold, _recent.ThresholdFor(share) ?? BaseThreshold);
        _state = new ElasticState(level, threshold, share, reason);
        _lastChange = now;
        Changed?.Invoke(before, Current);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
