using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using TaH.Engine.Generation;
using TaH.Engine.Serving;
using TaH.Engine.TaH;

namespace TaH.Server.Bench;

/// <summary>
/// An open-loop overload: requests arrive at <see cref="ArrivalRate"/> per second (Poisson, seeded)
/// for <see cref="DurationSeconds"/>, then stop; the run ends when the last one is answered.
/// </summary>
internal sealed record OverloadScenario(
    IterationPolicy Policy,
    double ArrivalRate,
    double DurationSeconds,
    int PromptTokens,
    int DecodeTokens,
    int MaxRunning,
    int KvBlocks,
    double MinShare,
    TimeSpan Interval,
    int Seed);

/// <summary>What one run (elastic depth off or on) measured. Times in seconds from the first arrival.</summary>
internal sealed record OverloadResult(
    bool Elastic,
    int Requests,
    double TimeToFirstTokenP50,
    double TimeToFirstTokenP99,
    double TokensPerSecond,
    double Depth2ShareUnderLoad,
    double LowestTargetShare,
    double HighestThreshold,
    double LastAnswerAt,
    double? ReturnedAfterLoadStop,
    double? ReturnedAfterQueueEmptied,
    IReadOnlyList<(double At, ElasticState State)> Changes)
{
    /// <summary>Field by field medians of runs of one mode; the changes of the first run.</summary>
    public static OverloadResult Median(IReadOnlyList<OverloadResult> runs)
    {
        double M(Func<OverloadResult, double> f) => BenchResult.Percentile([.. runs.Select(f)], 0.5);
        double? N(Func<OverloadResult, double?> f) => runs.All(r => f(r) is not null) ? M(r => f(r)!.Value) : null;
        return new OverloadResult(runs[0].Elastic, runs[0].Requests, M(r => r.TimeToFirstTokenP50), M(r => r.TimeToFirstTokenP99), M(r => r.TokensPerSecond),
            M(r => r.Depth2ShareUnderLoad), M(r => r.LowestTargetShare), M(r => r.HighestThreshold), M(r => r.LastAnswerAt),
            N(r => r.ReturnedAfterLoadStop), N(r => r.ReturnedAfterQueueEmptied), runs[0].Changes);
    }
}

/// <summary>
/// Elastic depth under more load than the engine serves, off and on, in one run: the same
/// arrivals and prompts through the server's own <see cref="EngineLoop"/> (its queue, scheduler
/// and elastic controller), in this process.
/// </summary>
internal sealed class OverloadBench(TaHModel model)
{
    public OverloadResult Run(OverloadScenario scenario, bool elastic, TextWriter log)
    {
        var random = new Random(scenario.Seed);
        var arrivals = new List<double>();
        for (double t = 0; ; )
        {
            t += -Math.Log(1 - random.NextDouble()) / scenario.ArrivalRate;
            if (t > scenario.DurationSeconds)
            {
                break;
            }

            arrivals.Add(t);
        }

        var prompts = arrivals.Select(_ => Enumerable.Range(0, scenario.PromptTokens).Select(_ => random.Next(model.Config.VocabSize)).ToArray()).ToList();
        double baseThreshold = scenario.Policy.ThresholdOr(model.Decider?.Threshold ?? 1);
        var controller = new ElasticDepth(new ElasticDepthOptions { Enabled = elastic, MinShare = scenario.MinShare, Interval = scenario.Interval }, baseThreshold);
        var clock = Stopwatch.StartNew();
        var changes = new ConcurrentQueue<(double, ElasticState)>();
        controller.Changed += (_, after) => changes.Enqueue((clock.Elapsed.TotalSeconds, after));

        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = scenario.KvBlocks, MaxRunning = scenario.MaxRunning, PrefixCaching = false, Elastic = controller });
        using var metrics = new TaHMetrics();
        using var loop = new EngineLoop(engine, metrics, new EngineLoopOptions { MaxWaiting = Math.Max(256, arrivals.Count + 1) });
        using var stop = new CancellationTokenSource();
        var running = loop.RunAsync(stop.Token);
        double queueEmptied = double.NaN;
        var watcher = Task.Run(async () =>
        {
            // When the queue last emptied after the arrivals stopped.
            while (!stop.IsCancellationRequested)
            {
                double now = clock.Elapsed.TotalSeconds;
                if (now > scenario.DurationSeconds && loop.Snapshot.Waiting == 0 && double.IsNaN(queueEmptied))
                {
                    queueEmptied = now;
                }

                await Task.Delay(20).ConfigureAwait(false);
            }
        });

        var readers = new List<Task<(double Submitted, List<(double At, int Depth)> Tokens)>>();
        for (int i = 0; i < arrivals.Count; i++)
        {
            double wait = arrivals[i] - clock.Elapsed.TotalSeconds;
            if (wait > 0)
            {
                Thread.Sleep(TimeSpan.FromSeconds(wait));
            }

            var stream = loop.Submit(new GenerationRequest
            {
                PromptTokens = prompts[i],
                MaxTokens = scenario.DecodeTokens,
                Policy = scenario.Policy,
                Sampling = InProcessBench.Sampling with { Seed = scenario.Seed + i },
                IgnoreEos = true,
            });
            double submitted = clock.Elapsed.TotalSeconds;
            readers.Add(Task.Run(async () =>
            {
                var tokens = new List<(double, int)>();
                await foreach (var e in stream.Tokens.ReadAllAsync().ConfigureAwait(false))
                {
                    tokens.Add((clock.Elapsed.TotalSeconds, e.Depth));
                }

                return (submitted, tokens);
            }));
        }

        log.WriteLine(Invariant($"elastic {(elastic ? "on" : "off")}: {arrivals.Count} requests offered in {scenario.DurationSeconds:0} s; waiting for the answers"));
        var answers = Task.WhenAll(readers).GetAwaiter().GetResult();
        stop.Cancel();
        running.GetAwaiter().GetResult();
        watcher.GetAwaiter().GetResult();

        var all = answers.SelectMany(a => a.Tokens).ToList();
        var ttft = answers.Select(a => a.Tokens[0].At - a.Submitted).ToArray();
        var underLoad = all.Where(t => t.At >= scenario.DurationSeconds / 2 && t.At <= scenario.DurationSeconds).ToList();
        var changeList = changes.ToList();
        double? returned = changeList.Count > 0 && !changeList[^1].Item2.Raised && changeList.Any(c => c.Item2.Raised) ? changeList[^1].Item1 : null;
        return new OverloadResult(
            elastic,
            arrivals.Count,
            BenchResult.Percentile(ttft, 0.5),
            BenchResult.Percentile(ttft, 0.99),
            all.Count(t => t.At <= scenario.DurationSeconds) / scenario.DurationSeconds,
            underLoad.Count == 0 ? double.NaN : (double)underLoad.Count(t => t.Depth >= 2) / underLoad.Count,
            changeList.Count == 0 ? controller.Current.TargetShare : changeList.Min(c => c.Item2.TargetShare),
            changeList.Count == 0 ? controller.Current.Threshold : changeList.Max(c => c.Item2.Threshold),
            all.Max(t => t.At),
            returned - scenario.DurationSeconds,
            returned - (double.IsNaN(queueEmptied) ? null : queueEmptied),
            changeList);
    }

    public static void WriteTable(TextWriter output, IReadOnlyList<OverloadResult> results)
    {
        output.WriteLine($"{"elastic",-8} {"requests",8} {"TTFT p50/p99 s",16} {"tok/s (load)",13} {"depth-2 (2nd half of load)",27} {"lowest target",14} {"highest threshold",18} {"back after load stop / queue empty (s)",40}");
        foreach (var r in results)
        {
            string back = r.ReturnedAfterLoadStop is { } a ? Invariant($"{a:0.00} / {r.ReturnedAfterQueueEmptied:0.00}") : "-";
            output.WriteLine(Invariant(
                $"{(r.Elastic ? "on" : "off"),-8} {r.Requests,8} {$"{r.TimeToFirstTokenP50:0.00}/{r.TimeToFirstTokenP99:0.00}",16} {r.TokensPerSecond,13:0.00} {r.Depth2ShareUnderLoad,27:P1} {r.LowestTargetShare,14:P1} {r.HighestThreshold,18:0.####} {back,40}"));
        }

        if (results.FirstOrDefault(r => !r.Elastic) is { } off && results.FirstOrDefault(r => r.Elastic) is { } on)
        {
            output.WriteLine(Invariant($"elastic on / off: TTFT p50 {on.TimeToFirstTokenP50 / off.TimeToFirstTokenP50:0.00}x, p99 {on.TimeToFirstTokenP99 / off.TimeToFirstTokenP99:0.00}x, tokens/s {on.TokensPerSecond / off.TokensPerSecond:0.00}x"));
        }

        foreach (var r in results.Where(r => r.Elastic))
        {
            foreach (var (at, state) in r.Changes)
            {
                output.WriteLine(Invariant($"  t={at,7:0.00} s  level {state.Level}  threshold {state.Threshold:0.####}  target share {state.TargetShare:P1}  ({state.Reason})"));
            }
        }
    }

    public static void WriteJson(string path, OverloadScenario scenario, IReadOnlyList<OverloadResult> results, object context) =>
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            context,
            scenario = new
            {
                policy = scenario.Policy.ToString(),
                arrival_rate = scenario.ArrivalRate,
                duration_s = scenario.DurationSeconds,
                prompt_tokens = scenario.PromptTokens,
                decode_tokens = scenario.DecodeTokens,
                max_running = scenario.MaxRunning,
                kv_blocks = scenario.KvBlocks,
                elastic_min_share = scenario.MinShare,
                elastic_interval_s = scenario.Interval.TotalSeconds,
            },
            results = results.Select(r => new
            {
                elastic = r.Elastic,
                requests = r.Requests,
                ttft_s = new { p50 = r.TimeToFirstTokenP50, p99 = r.TimeToFirstTokenP99 },
                tokens_per_second_under_load = r.TokensPerSecond,
                depth2_share_second_half_of_load = r.Depth2ShareUnderLoad,
                lowest_target_share = r.LowestTargetShare,
                highest_threshold = r.HighestThreshold,
                last_answer_s = r.LastAnswerAt,
                returned_after_load_stop_s = r.ReturnedAfterLoadStop,
                returned_after_queue_emptied_s = r.ReturnedAfterQueueEmptied,
                changes = r.Changes.Select(c => new { at_s = c.At, level = c.State.Level, threshold = c.State.Threshold, target_share = c.State.TargetShare, reason = c.State.Reason }),
            }),
        }, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
