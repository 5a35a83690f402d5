using TaH.Engine.TaH;

namespace TaH.Engine.Tests.Budget;

/// <summary>
/// The budget controller on its own, fed probability streams: its bounds hold whatever the
/// decider says, it spends the second pass on the highest probabilities, and it never spends
/// ahead of time.
/// </summary>
public sealed class DepthBudgetTests
{
    // The bounds are strict in exact arithmetic; the test computes s k in doubles (error ~1e-16 k).
    private const double Rounding = 1e-9;

    /// <summary>Runs <paramref name="budget"/> over the stream; a free decision goes deeper when <paramref name="wants"/> says so.</summary>
    private static List<bool> Run(DepthBudget budget, int decisions, Func<int, double, bool> wants, Func<int, double> probability, double fallback = 0.5)
    {
        var deep = new List<bool>();
        for (int k = 0; k < decisions; k++)
        {
            double p = probability(k);
            var next = budget.Next(fallback);
            bool deeper = next.Choice switch
            {
                BudgetChoice.Iterate => true,
                BudgetChoice.Stop => false,
                _ => wants(k, next.Threshold),
            };
            budget.Record(deeper, p);
            deep.Add(deeper);
        }

        return deep;
    }

    private static void AssertBoundsAtEveryPrefix(IReadOnlyList<bool> deep, double? target, double? max)
    {
        int d = 0;
        for (int k = 1; k <= deep.Count; k++)
        {
            d += deep[k - 1] ? 1 : 0;
            if (target is { } s)
            {
                Assert.True(Math.Abs(d - (s * k)) < 1 + Rounding, $"after {k} tokens: {d} at depth 2, target {s} x {k} = {s * k}");
            }

            if (max is { } m)
            {
                Assert.True(d <= m * k, $"after {k} tokens: {d} at depth 2 exceeds max_share {m} x {k}");
            }
        }
    }

    public static TheoryData<double?, double?> Settings() => new()
    {
        { 0.05, null }, { 0.01, null }, { 0.2, null }, { 0.5, null }, { 0.95, null }, { 1.0, null }, { 0.0, null },
        { 0.05, 0.08 }, { 0.1, 0.1 }, { null, 0.1 }, { null, 0.3 }, { 0.3333333333333, 0.3333333333333 },
    };

    [Theory]
    [MemberData(nameof(Settings))]
    public void BoundsHoldWhateverTheDeciderWants(double? target, double? max)
    {
        // Free decisions chosen adversarially (always, never) or at random: the bounds must not depend on them.
        var random = new Random(17);
        foreach (var wants in new Func<int, double, bool>[] { (_, _) => true, (_, _) => false, (_, _) => random.Next(2) == 0, (k, _) => k % 7 < 3 })
        {
            var budget = new DepthBudget(DepthBudgetSettings.Create(target, max));
            var deep = Run(budget, 3000, wants, _ => random.NextDouble());
            AssertBoundsAtEveryPrefix(deep, target, max);
            Assert.Equal(deep.Count(x => x), budget.Deep);
            Assert.Equal(3000, budget.Decisions);
        }
    }

    [Theory]
    [InlineData(0.05)]
    [InlineData(0.2)]
    public void TheBudgetIsNotSpentOnTheFirstTokens(double target)
    {
        // A decider that wants every token: the controller still spreads the budget, one token ahead at most.
        var budget = new DepthBudget(DepthBudgetSettings.Create(target, null));
        var deep = Run(budget, 200, (_, _) => true, _ => 1.0);
        for (int k = 1; k <= deep.Count; k++)
        {
            int d = deep.Take(k).Count(x => x);
            Assert.True(d <= Math.Floor(target * k) + 1, $"after {k} tokens {d} took the second pass");
        }

        Assert.InRange(deep.Take(20).Count(x => x), 0, (int)Math.Floor(target * 20) + 1);
    }

    [Theory]
    [InlineData(0.1, 0.84)]
    [InlineData(0.02, 0.9)]
    public void FreeDecisionsGoWhereTheDeciderIsMostSure(double target, double atLeast)
    {
        // Uniform probabilities. The band allows about one pass per 1/s tokens, chosen online: the
        // best an online rule can expect is W_(1/s - 1) of the uniform distribution (0.86 for s = 0.1,
        // 0.96 for s = 0.02), a blind choice 0.5.
        var random = new Random(3);
        var p = Enumerable.Range(0, 6000).Select(_ => random.NextDouble()).ToArray();
        var budget = new DepthBudget(DepthBudgetSettings.Create(target, null));
        var deep = Run(budget, p.Length, (k, threshold) => p[k] > threshold, k => p[k]);

        AssertBoundsAtEveryPrefix(deep, target, null);
        double mean = p.Where((_, k) => deep[k]).Average();
        Assert.True(mean > atLeast, $"the iterated tokens' probabilities average {mean:0.000}");
    }

    [Fact]
    public void ACapAloneLetsTheGivenThresholdDecideUpToTheCap()
    {
        var budget = new DepthBudget(DepthBudgetSettings.Create(null, 0.25));
        var first = budget.Next(0.7);
        Assert.Equal(new BudgetDecision(BudgetChoice.Stop), first); // 1 of 1 would be 100% > 25%

        // A decider that always wants: exactly the cap's worth, at every prefix.
        var deep = Run(budget, 400, (_, _) => true, _ => 0.9, fallback: 0.7);
        AssertBoundsAtEveryPrefix(deep, null, 0.25);
        Assert.Equal(100, deep.Count(x => x));

        var free = new DepthBudget(DepthBudgetSettings.Create(null, 0.5));
        free.Record(false, 0.1);
        Assert.Equal(new BudgetDecision(BudgetChoice.Decide, 0.7), free.Next(0.7));
    }

    [Fact]
    public void UntilItHasItsOwnProbabilitiesItDecidesAsTheDeciderItBudgets()
    {
        var budget = new DepthBudget(DepthBudgetSettings.Create(0.05, null));
        for (int k = 0; k < DepthBudget.MinObservations; k++)
        {
            Assert.Equal(new BudgetDecision(BudgetChoice.Decide, 0.37), budget.Next(0.37));
            budget.Record(false, 0.01 * k);
        }

        // Then its own: the probabilities seen were 0 .. 0.07, so holding out is worth at most 0.07.
        var own = budget.Next(0.37);
        Assert.Equal(BudgetChoice.Decide, own.Choice);
        Assert.InRange(own.Threshold, 0.035, 0.07);

        // With one token left and no pass due before it, the pass is optional: the quantile of the share owed.
        var last = budget.Next(0.37, decisionsLeft: 0);
        Assert.Equal(0.07, last.Threshold); // floor(0.05 x 1.4 x 8) = 0 of the 8 may exceed it: the largest
    }

    [Fact]
    public void AForkContinuesFromTheSameStateIndependently()
    {
        var budget = new DepthBudget(DepthBudgetSettings.Create(0.3, null));
        Run(budget, 10, (_, _) => true, k => k / 10.0);
        var fork = budget.Clone();
        Assert.Equal(budget.Next(0.5), fork.Next(0.5));
        fork.Record(true, 0.99);
        Assert.Equal(10, budget.Decisions);
        Assert.Equal(11, fork.Decisions);
    }

    [Theory]
    [InlineData(1.5, null, "target_share")]
    [InlineData(-0.1, null, "target_share")]
    [InlineData(double.NaN, null, "target_share")]
    [InlineData(null, 2.0, "max_share")]
    [InlineData(0.5, 0.2, "max_share")]
    [InlineData(null, null, "target_share")]
    public void BadSettingsNameTheField(double? target, double? max, string field)
    {
        var e = Assert.Throws<ArgumentException>(() => DepthBudgetSettings.Create(target, max));
        Assert.Equal(field, e.ParamName);
    }

    [Fact]
    public void ABudgetAppliesToTheDeciderOnlyAndATargetExcludesAThreshold()
    {
        var settings = DepthBudgetSettings.Create(0.1, null);
        Assert.Equal("target_share", Assert.Throws<ArgumentException>(() => IterationPolicy.Never.WithBudget(settings)).ParamName);
        Assert.Equal("target_share", Assert.Throws<ArgumentException>(() => IterationPolicy.Parse("decider", 0.3).WithBudget(settings)).ParamName);
        Assert.Equal("decider(threshold=0.3,max_share=0.2)", IterationPolicy.Parse("decider", 0.3).WithBudget(DepthBudgetSettings.Create(null, 0.2)).ToString());
        Assert.Equal("decider(target_share=0.1)", IterationPolicy.Decider.WithBudget(settings).ToString());
    }

    [Fact]
    public void TheWindowQuantileIsTheOrderStatisticOfTheRecentValues()
    {
        var window = new RecentQuantile(5);
        Assert.Null(window.ThresholdFor(0.5));
        foreach (double v in new[] { 0.9, 0.1, 0.5, 0.3, 0.7, 0.2 }) // 0.9 leaves the window
        {
            window.Add(v);
        }

        Assert.Equal(5, window.Count);
        Assert.Equal(0.7, window.ThresholdFor(0)); // nothing may exceed the max
        Assert.Equal(0.5, window.ThresholdFor(0.2)); // one of five (0.7) exceeds 0.5
        Assert.Equal(0.3, window.ThresholdFor(0.5)); // floor(2.5) = 2 exceed 0.3
        Assert.Equal(double.NegativeInfinity, window.ThresholdFor(1));
        Assert.Equal(0.4, window.ShareAbove(0.3), 12);
        Assert.Equal(0, window.ShareAbove(0.7));
    }
}
