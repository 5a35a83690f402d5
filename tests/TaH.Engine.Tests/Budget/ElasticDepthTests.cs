using TaH.Engine.TaH;

namespace TaH.Engine.Tests.Budget;

/// <summary>The elastic-depth controller on its own, driven with load signals and a clock.</summary>
public sealed class ElasticDepthTests
{
    private static readonly LoadSignal Queued = new(Waiting: 3, Running: 8, HeldBlocks: 10, TotalBlocks: 100);
    private static readonly LoadSignal Calm = new(Waiting: 0, Running: 8, HeldBlocks: 10, TotalBlocks: 100);
    private static readonly LoadSignal Idle = new(Waiting: 0, Running: 0, HeldBlocks: 0, TotalBlocks: 100);

    private static TimeSpan S(double seconds) => TimeSpan.FromSeconds(seconds);

    /// <summary>A controller whose window holds 1000 evenly spread probabilities 0.0005 .. 0.9995.</summary>
    private static (ElasticDepth Elastic, List<(ElasticState Before, ElasticState After)> Changes) Make(bool enabled, double baseThreshold = 0.8, double minShare = 0.05)
    {
        var elastic = new ElasticDepth(new ElasticDepthOptions { Enabled = enabled, MinShare = minShare, Interval = S(1), Window = 1000 }, baseThreshold);
        for (int i = 0; i < 1000; i++)
        {
            elastic.Observe((i + 0.5) / 1000);
        }

        var changes = new List<(ElasticState, ElasticState)>();
        elastic.Changed += (before, after) => changes.Add((before, after));
        return (elastic, changes);
    }

    [Fact]
    public void UnderSustainedLoadItHalvesTheShareDownToTheFloorThenReturnsWhenTheLoadEases()
    {
        var (elastic, changes) = Make(enabled: true);
        Assert.Equal(0.8, elastic.Current.Threshold);
        Assert.Equal(0.2, elastic.Current.TargetShare, 9); // the default threshold's share of the window

        elastic.Update(Queued, S(0));
        elastic.Update(Queued, S(0.5));
        Assert.Null(elastic.RaisedThreshold); // pressure must last an interval first

        elastic.Update(Queued, S(1.0));
        Assert.Equal(1, elastic.Current.Level);
        Assert.Equal(0.1, elastic.Current.TargetShare, 9);
        Assert.InRange(elastic.RaisedThreshold!.Value, 0.899, 0.901); // 10% of the window lies above

        elastic.Update(Queued, S(1.5));
        Assert.Equal(1, elastic.Current.Level); // one step per interval
        elastic.Update(Queued, S(2.0));
        Assert.Equal(0.05, elastic.Current.TargetShare, 9);
        Assert.InRange(elastic.RaisedThreshold!.Value, 0.949, 0.951);
        elastic.Update(Queued, S(3.0));
        elastic.Update(Queued, S(4.0));
        Assert.Equal(2, elastic.Current.Level); // the floor: 0.05
        Assert.Equal(2, changes.Count);

        elastic.Update(Calm, S(4.2));
        elastic.Update(Calm, S(5.0));
        Assert.Equal(2, elastic.Current.Level); // calm must last an interval too
        elastic.Update(Calm, S(5.2));
        Assert.Equal(0, elastic.Current.Level);
        Assert.Null(elastic.RaisedThreshold);
        Assert.Equal(0.8, elastic.Current.Threshold); // back to the default threshold at once
        Assert.Equal(3, changes.Count);
        Assert.Equal((2, 0), (changes[^1].Before.Level, changes[^1].After.Level));
        Assert.True(changes.All(c => c.After.Threshold >= 0.8));
    }

    [Fact]
    public void ANearlyFullPoolIsPressureAndAnIdleEngineReturnsAtOnce()
    {
        var (elastic, _) = Make(enabled: true);
        var full = new LoadSignal(Waiting: 0, Running: 4, HeldBlocks: 90, TotalBlocks: 100);
        elastic.Update(full, S(0));
        elastic.Update(full, S(1));
        Assert.True(elastic.Current.Raised);
        Assert.Contains("KV pool", elastic.Current.Reason, StringComparison.Ordinal);

        elastic.Update(Idle, S(1.01));
        Assert.False(elastic.Current.Raised);
        Assert.Equal("idle", elastic.Current.Reason);
    }

    [Fact]
    public void OffItOnlyWatches()
    {
        var (elastic, changes) = Make(enabled: false);
        for (int t = 0; t < 10; t++)
        {
            elastic.Update(Queued, S(t));
        }

        Assert.Empty(changes);
        Assert.Null(elastic.RaisedThreshold);
        Assert.Equal(0.8, elastic.Current.Threshold);
        Assert.Equal(0.2, elastic.Current.TargetShare, 9);
    }

    [Fact]
    public void NothingToYieldWhenTheDefaultShareIsAtTheFloor()
    {
        var (elastic, changes) = Make(enabled: true, baseThreshold: 0.99, minShare: 0.05); // the default gives 1%
        for (int t = 0; t < 5; t++)
        {
            elastic.Update(Queued, S(t));
        }

        Assert.Empty(changes);
        Assert.Equal(0.99, elastic.Current.Threshold);
    }
}
