using TaH.Engine.TaH;

namespace TaH.Server.Bench;

/// <summary>One benchmark cell: a policy at a concurrency.</summary>
internal sealed record BenchScenario(IterationPolicy Policy, int Concurrency, int PromptTokens, int DecodeTokens);

/// <summary>What a run measured. Times in milliseconds.</summary>
internal sealed record BenchResult(
    BenchScenario Scenario,
    double DecodeTokensPerSecond,
    double TimeToFirstTokenP50,
    double TimeToFirstTokenP90,
    double TimeToFirstTokenP99,
    double InterTokenP50,
    double InterTokenP90,
    double InterTokenP99,
    double Depth2Share,
    long KvBytesDepth1,
    long KvBytesDepth2,
    double? KernelShare = null)
{
    /// <summary>Aggregate cost of one decoded token.</summary>
    public double MsPerToken => 1000 / DecodeTokensPerSecond;

    /// <summary>Of a median: each round's <see cref="MsPerToken"/>, in round order.</summary>
    public IReadOnlyList<double> RoundMsPerToken { get; init; } = [];

    /// <summary>The median of several runs of the same scenario, field by field.</summary>
    public static BenchResult Median(IReadOnlyList<BenchResult> runs)
    {
        double M(Func<BenchResult, double> f) => Percentile([.. runs.Select(f)], 0.5);
        long L(Func<BenchResult, long> f) => (long)M(r => f(r));
        return new BenchResult(
            runs[0].Scenario,
            M(r => r.DecodeTokensPerSecond),
            M(r => r.TimeToFirstTokenP50),
            M(r => r.TimeToFirstTokenP90),
            M(r => r.TimeToFirstTokenP99),
            M(r => r.InterTokenP50),
            M(r => r.InterTokenP90),
            M(r => r.InterTokenP99),
            M(r => r.Depth2Share),
            L(r => r.KvBytesDepth1),
            L(r => r.KvBytesDepth2),
            runs.All(r => r.KernelShare is not null) ? M(r => r.KernelShare!.Value) : null)
        {
            RoundMsPerToken = [.. runs.Select(r => r.MsPerToken)],
        };
    }

    /// <summary>Linear-interpolated percentile (q in [0, 1]).</summary>
    public static double Percentile(IReadOnlyList<double> values, double q)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToArray();
        double rank = q * (sorted.Length - 1);
        int low = (int)Math.Floor(rank), high = (int)Math.Ceiling(rank);
        return sorted[low] + ((sorted[high] - sorted[low]) * (rank - low));
    }
}

/// <summary>Per-request token timestamps of one run, turned into a <see cref="BenchResult"/>.</summary>
internal sealed class RunTimings(BenchScenario scenario)
{
    private readonly List<(double Submitted, List<double> Tokens)> _requests = [];
    private readonly List<(double At, double KernelMs)> _steps = [];

    public int Deep { get; set; }

    public int Total { get; set; }

    public long KvBytesDepth1 { get; set; }

    public long KvBytesDepth2 { get; set; }

    public int AddRequest(double submittedMs)
    {
        _requests.Add((submittedMs, []));
        return _requests.Count - 1;
    }

    /// <summary>An engine step ended at <paramref name="atMs"/>, with the weight kernels' clock at <paramref name="kernelMs"/> (in-process runs).</summary>
    public void Step(double atMs, double kernelMs) => _steps.Add((atMs, kernelMs));

    public void Token(int request, double atMs, int depth)
    {
        _requests[request].Tokens.Add(atMs);
        Total++;
        Deep += depth > 1 ? 1 : 0;
    }

    /// <summary>
    /// Decode throughput is taken over the window in which every request is decoding: from the
    /// moment all had their second token to the moment the first one finished. The step after a
    /// request's first token still runs its prompt's deeper passes (the positions the decider
    /// iterated), which is prompt work, not decoding. Requests that start together end apart (one
    /// that iterates more takes more steps), and the drain after the first finish runs at a lower
    /// concurrency than the one measured, which a server refills.
    /// </summary>
    public BenchResult Result()
    {
        double decodeStart = _requests.Max(r => r.Tokens[Math.Min(1, r.Tokens.Count - 1)]), end = _requests.Min(r => r.Tokens[^1]);
        if (end <= decodeStart)
        {
            // Too short for a common window: from the last first token, else the whole tail.
            decodeStart = _requests.Max(r => r.Tokens[0]);
            if (end <= decodeStart)
            {
                end = _requests.Max(r => r.Tokens[^1]);
            }
        }

        int decodeTokens = _requests.Sum(r => r.Tokens.Count(t => t > decodeStart && t <= end));
        var ttft = _requests.Select(r => r.Tokens[0] - r.Submitted).ToArray();
        var gaps = _requests.SelectMany(r => r.Tokens.Zip(r.Tokens.Skip(1), (a, b) => b - a)).ToArray();
        // Kernel time over the same window, from the clock read at the ends of the window's steps.
        var window = _steps.Where(s => s.At >= decodeStart && s.At <= end).ToArray();
        double? kernelShare = window.Length < 2 || window[^1].KernelMs == 0 ? null
            : (window[^1].KernelMs - window[0].KernelMs) / (window[^1].At - window[0].At);
        return new BenchResult(
            scenario,
            decodeTokens / Math.Max(1e-9, (end - decodeStart) / 1000),
            BenchResult.Percentile(ttft, 0.5),
            BenchResult.Percentile(ttft, 0.9),
            BenchResult.Percentile(ttft, 0.99),
            BenchResult.Percentile(gaps, 0.5),
            BenchResult.Percentile(gaps, 0.9),
            BenchResult.Percentile(gaps, 0.99),
            Total == 0 ? 0 : (double)Deep / Total,
            KvBytesDepth1,
            KvBytesDepth2,
            kernelShare);
    }
}
