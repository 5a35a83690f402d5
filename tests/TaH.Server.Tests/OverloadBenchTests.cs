using TaH.Engine.Model;
using TaH.Engine.TaH;
using TaH.Server.Bench;

namespace TaH.Server.Tests;

/// <summary>The overload benchmark on the tiny fixture: what it reports, not how fast anything is.</summary>
public sealed class OverloadBenchTests
{
    [Fact]
    public void OffNeverYieldsOnYieldsUnderTheQueueAndReturnsAndBothServeEveryRequest()
    {
        using var model = ModelLoader.Load(Repo.Path("tests", "fixtures", "tah-tiny", "a"));
        // Far more arrivals than two running slots serve; the emulated decider at 30%, a floor of 2%.
        var scenario = new OverloadScenario(IterationPolicy.DeciderAtRate(0.3) with { Elastic = true }, ArrivalRate: 80, DurationSeconds: 0.5,
            PromptTokens: 8, DecodeTokens: 12, MaxRunning: 2, KvBlocks: 32, MinShare: 0.02, Interval: TimeSpan.Zero, Seed: 3);
        var bench = new OverloadBench(model);
        var off = bench.Run(scenario, elastic: false, TextWriter.Null);
        var on = bench.Run(scenario, elastic: true, TextWriter.Null);

        Assert.Equal(off.Requests, on.Requests); // the same arrivals
        Assert.True(off.Requests > 20);
        Assert.Empty(off.Changes);
        Assert.Null(off.ReturnedAfterLoadStop);
        Assert.Equal(0.7, off.HighestThreshold, 12); // the emulated default: 1 - rate

        Assert.Contains(on.Changes, c => c.State.Raised);
        Assert.False(on.Changes[^1].State.Raised);
        Assert.Equal(0.02, on.LowestTargetShare, 12); // it reached the floor
        Assert.True(on.HighestThreshold > 0.9);
        Assert.NotNull(on.ReturnedAfterLoadStop);

        var table = new StringWriter();
        OverloadBench.WriteTable(table, [off, on]);
        Assert.Contains("elastic on / off", table.ToString(), StringComparison.Ordinal);
    }
}
