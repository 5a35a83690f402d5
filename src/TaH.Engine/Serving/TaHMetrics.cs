using System.Diagnostics.Metrics;
using TaH.Engine.TaH;

namespace TaH.Engine.Serving;

/// <summary>
/// The engine's instruments, on the meter <see cref="MeterName"/>. Exported to Prometheus they read
/// <c>tah_requests_total</c>, <c>tah_tokens_by_depth_total</c>, <c>tah_time_to_first_token_seconds</c>
/// and so on (see the README's metric list).
/// </summary>
public sealed class TaHMetrics : IDisposable
{
    public const string MeterName = "TaH.Engine";

    private readonly Meter _meter;
    private readonly Counter<long> _requests;
    private readonly Counter<long> _promptTokens;
    private readonly Counter<long> _generationTokens;
    private readonly Counter<long> _tokensByDepth;
    private readonly Histogram<double> _timeToFirstToken;
    private readonly Histogram<double> _interTokenLatency;
    private readonly Histogram<double> _requestLatency;
    private readonly Histogram<double> _continueProbability;
    private long _tokens;
    private long _deepTokens;

    public TaHMetrics(IMeterFactory? factory = null)
    {
        _meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        _requests = _meter.CreateCounter<long>("tah.requests", "{request}", "finished requests by finish reason and policy");
        _promptTokens = _meter.CreateCounter<long>("tah.prompt_tokens", "{token}", "prompt tokens of finished requests");
        _generationTokens = _meter.CreateCounter<long>("tah.generation_tokens", "{token}", "generated tokens");
        _tokensByDepth = _meter.CreateCounter<long>("tah.tokens_by_depth", "{token}", "generated tokens by the number of passes their prediction took");
        _timeToFirstToken = _meter.CreateHistogram("tah.time_to_first_token", "s", "time from submission to the first generated token",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _interTokenLatency = _meter.CreateHistogram("tah.inter_token_latency", "s", "time between consecutive tokens of a request",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _requestLatency = _meter.CreateHistogram("tah.request_latency", "s", "time from submission to the last token",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _continueProbability = _meter.CreateHistogram("tah.decider.continue_probability", null, "the decider's continue probability after the first pass",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [.. Enumerable.Range(1, 20).Select(i => i / 20.0)] });
        _meter.CreateObservableGauge("tah.depth2_share", () => Interlocked.Read(ref _tokens) == 0 ? 0.0 : (double)Interlocked.Read(ref _deepTokens) / Interlocked.Read(ref _tokens),
            null, "share of generated tokens that took a second pass, since start");
    }

    private static IReadOnlyList<double> LatencyBuckets { get; } =
        [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 20, 40, 80];

    public Meter Meter => _meter;

    /// <summary>Registers the gauges that read the engine loop's state.</summary>
    internal void Observe(Func<EngineSnapshot> snapshot, Func<(long Preemptions, long CachedPromptTokens)> totals)
    {
        _meter.CreateObservableCounter("tah.preemptions", () => totals().Preemptions, "{preemption}", "running sequences that gave their blocks back to be recomputed");
        _meter.CreateObservableCounter("tah.prefix_cache.hit_tokens", () => totals().CachedPromptTokens, "{token}", "prompt tokens whose keys and values came from the prefix cache");
        _meter.CreateObservableGauge("tah.kv.blocks_cached", () => snapshot().CachedBlocks, "{block}", "KV blocks held by no sequence, kept for the prefix cache");
        _meter.CreateObservableGauge("tah.requests.running", () => snapshot().Running, "{request}", "requests being decoded");
        _meter.CreateObservableGauge("tah.requests.waiting", () => snapshot().Waiting, "{request}", "requests queued for admission");
        _meter.CreateObservableGauge("tah.kv.blocks_used", () => snapshot().BlocksByDepth.Select((b, i) => new Measurement<int>(b, new KeyValuePair<string, object?>("depth", i + 1))),
            "{block}", "KV blocks held, by depth");
        _meter.CreateObservableGauge("tah.kv.blocks_total", () => snapshot().TotalBlocks, "{block}", "KV blocks in the pool");
    }

    /// <summary>Registers the gauges of elastic depth: the threshold and depth-2 share that requests without their own run at now.</summary>
    internal void ObserveElastic(ElasticDepth elastic)
    {
        _meter.CreateObservableGauge("tah.elastic.threshold", () => elastic.Current.Threshold, null,
            "decider threshold of requests that set neither threshold nor target_share (raised above the default under load with --elastic-depth)");
        _meter.CreateObservableGauge("tah.elastic.target_share", () => elastic.Current.TargetShare, null,
            "depth-2 share those requests aim at: the default threshold's (measured) at rest, lowered towards --elastic-min-share under load");
    }

    internal void Token(IterationPolicy policy, int depth, double? continueProbability)
    {
        _generationTokens.Add(1);
        _tokensByDepth.Add(1, new KeyValuePair<string, object?>("depth", depth), new KeyValuePair<string, object?>("policy", PolicyTag(policy)));
        Interlocked.Increment(ref _tokens);
        if (depth > 1)
        {
            Interlocked.Increment(ref _deepTokens);
        }

        if (continueProbability is { } p)
        {
            _continueProbability.Record(p);
        }
    }

    internal void FirstToken(TimeSpan sinceSubmit) => _timeToFirstToken.Record(sinceSubmit.TotalSeconds);

    internal void InterToken(TimeSpan gap) => _interTokenLatency.Record(gap.TotalSeconds);

    internal void Finished(IterationPolicy policy, string finishReason, int promptTokens, TimeSpan sinceSubmit)
    {
        _requests.Add(1, new KeyValuePair<string, object?>("finish_reason", finishReason), new KeyValuePair<string, object?>("policy", PolicyTag(policy)));
        _promptTokens.Add(promptTokens);
        _requestLatency.Record(sinceSubmit.TotalSeconds);
    }

    private static string PolicyTag(IterationPolicy policy) => policy.Kind.ToString().ToLowerInvariant();

    public void Dispose() => _meter.Dispose();
}
