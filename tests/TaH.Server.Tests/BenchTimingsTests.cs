using TaH.Engine.TaH;
using TaH.Server.Bench;

namespace TaH.Server.Tests;

/// <summary>How the benchmark turns token timestamps into figures, on timestamps worked out by hand.</summary>
public sealed class BenchTimingsTests
{
    [Fact]
    public void DecodeThroughputIsTakenWhileEveryRequestDecodes()
    {
        var timings = new RunTimings(new BenchScenario(IterationPolicy.Never, 2, 4, 4));
        int a = timings.AddRequest(0), b = timings.AddRequest(0);
        foreach (double t in new[] { 100.0, 200, 300, 400 })
        {
            timings.Token(a, t, 1);
        }

        // b starts later and drains alone after a's last token at 400 ms.
        foreach (double t in new[] { 150.0, 250, 350, 450, 550, 650 })
        {
            timings.Token(b, t, t == 250 ? 2 : 1);
        }

        var result = timings.Result();

        // Window (250, 400] ms, from b's second token: a's 300, 400 and b's 350 = 3 tokens in 0.15 s.
        Assert.Equal(20.0, result.DecodeTokensPerSecond, 9);
        Assert.Equal(125.0, result.TimeToFirstTokenP50, 9); // median of 100 and 150
        Assert.Equal(100.0, result.InterTokenP50, 9); // every gap is 100 ms
        Assert.Equal(0.1, result.Depth2Share, 9); // 1 of 10 tokens
    }

    [Fact]
    public void TheStepAfterTheFirstTokenIsPromptWorkOutsideTheWindow()
    {
        var timings = new RunTimings(new BenchScenario(IterationPolicy.Decider, 1, 4, 4));
        int a = timings.AddRequest(0);
        // The second token waits 300 ms for the prompt's depth-2 pass; then 100 ms a token.
        foreach (double t in new[] { 100.0, 400, 500, 600 })
        {
            timings.Token(a, t, 1);
        }

        // (400, 600]: 2 tokens in 0.2 s; counting from the first token would give 3 in 0.5 s.
        Assert.Equal(10.0, timings.Result().DecodeTokensPerSecond, 9);
        Assert.Equal(100.0, timings.Result().TimeToFirstTokenP50, 9);
    }

    [Fact]
    public void TheKernelShareIsKernelTimeOverTheDecodeWindowsSteps()
    {
        var timings = new RunTimings(new BenchScenario(IterationPolicy.Never, 1, 4, 4));
        int a = timings.AddRequest(0);
        // A prefill step (kernel clock 0 -> 50 ms) before the window; then steps of 100 ms, 60 in kernels.
        double kernel = 50;
        timings.Step(100, kernel);
        timings.Token(a, 100, 1);
        foreach (double t in new[] { 200.0, 300, 400 })
        {
            kernel += 60;
            timings.Step(t, kernel);
            timings.Token(a, t, 1);
        }

        Assert.Equal(0.6, timings.Result().KernelShare!.Value, 9);

        // Over HTTP no steps are seen: no share.
        var http = new RunTimings(new BenchScenario(IterationPolicy.Never, 1, 4, 4));
        int b = http.AddRequest(0);
        http.Token(b, 100, 1);
        http.Token(b, 200, 1);
        Assert.Null(http.Result().KernelShare);
    }

    [Fact]
    public void RequestsTooShortForACommonWindowFallBackToTheWholeTail()
    {
        var timings = new RunTimings(new BenchScenario(IterationPolicy.Never, 2, 4, 2));
        int a = timings.AddRequest(0), b = timings.AddRequest(0);
        timings.Token(a, 100, 1);
        timings.Token(b, 300, 1);
        timings.Token(b, 500, 1);

        // a finished before b's first token: the span is (300, 500], one token in 0.2 s.
        Assert.Equal(5.0, timings.Result().DecodeTokensPerSecond, 9);
    }

    [Fact]
    public void RatiosPairTheRoundsAsWellAsTheMedians()
    {
        BenchResult Run(IterationPolicy policy, double tokensPerSecond) =>
            new(new BenchScenario(policy, 1, 4, 4), tokensPerSecond, 0, 0, 0, 0, 0, 0, 0, 0, 0);

        // ms/token: never 20, 25, 40; decider 22, 30, 41 (tokens/s = 1000 / ms).
        var never = BenchResult.Median([Run(IterationPolicy.Never, 50), Run(IterationPolicy.Never, 40), Run(IterationPolicy.Never, 25)]);
        var decider = BenchResult.Median([Run(IterationPolicy.Decider, 1000 / 22.0), Run(IterationPolicy.Decider, 1000 / 30.0), Run(IterationPolicy.Decider, 1000 / 41.0)]);

        string line = Assert.Single(BenchReport.Ratios([never, decider]));

        // Medians 25 and 30 ms: 1.200x; the rounds 1.100, 1.200 and 1.025, whose median is 1.100.
        Assert.Equal("concurrency 1: per-token cost decider/never = 1.200x (decider depth-2 share 0.0 %); round by round 1.100 1.200 1.025, median 1.100x", line);
        Assert.Equal([20.0, 25.0, 40.0], never.RoundMsPerToken.Select(v => Math.Round(v, 9)));
    }

    [Fact]
    public void ASingleRoundHasNoRoundByRoundRatios()
    {
        var never = BenchResult.Median([new BenchResult(new BenchScenario(IterationPolicy.Never, 1, 4, 4), 50, 0, 0, 0, 0, 0, 0, 0, 0, 0)]);
        var decider = BenchResult.Median([new BenchResult(new BenchScenario(IterationPolicy.Decider, 1, 4, 4), 40, 0, 0, 0, 0, 0, 0, 0, 0, 0)]);

        Assert.Equal("concurrency 1: per-token cost decider/never = 1.250x (decider depth-2 share 0.0 %)", Assert.Single(BenchReport.Ratios([never, decider])));
    }
}
