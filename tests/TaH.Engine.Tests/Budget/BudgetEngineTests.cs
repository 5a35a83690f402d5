using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Engine.Tests.Batching;

namespace TaH.Engine.Tests.Budget;

/// <summary>
/// Depth budgets in the engine, on the tiny reference checkpoints: the bounds per sequence over
/// many prompts (batched, chunked, preempted, forked), the same decisions as alone, target 0 as
/// never, and a prefix cache that never hands a budgeted sequence depth-2 entries.
/// </summary>
public sealed class BudgetEngineTests : IDisposable
{
    // |d - s G| is computed in doubles: rounding ~1e-16 G on a bound the controller keeps strictly.
    private const double Rounding = 1e-9;

    private readonly TaHModel _model = ModelLoader.Load(Fixtures.TinyCheckpoint("a"));

    public void Dispose() => _model.Dispose();

    private static IterationPolicy Budgeted(double? target, double? max = null, IterationPolicy? basePolicy = null) =>
        (basePolicy ?? IterationPolicy.Decider).WithBudget(DepthBudgetSettings.Create(target, max));

    [Fact]
    public void OverManyPromptsEachSequenceStaysWithinOneTokenOfItsTargetAndUnderItsCap()
    {
        var random = new Random(21);
        double[] targets = [0.02, 0.05, 0.1, 0.25, 0.5, 0.9];
        var requests = Enumerable.Range(0, 36).Select(i =>
        {
            double target = targets[i % targets.Length];
            double? max = i % 3 == 0 ? Math.Min(1, target * 1.5) : null;
            var basePolicy = i % 4 == 3 ? IterationPolicy.DeciderAtRate(0.3) : IterationPolicy.Decider;
            return BatchRunner.Request(Prompt(random, random.Next(1, 40)), random.Next(5, 90), Budgeted(target, max, basePolicy), seed: i)
                with { N = 1 + (i % 5 == 0 ? 2 : 0) };
        }).ToList();

        // A pool too small for all at once, though each request fits it alone as the admission gate requires, and a row budget that chunks prompts.
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 176, BlockSize = 4, MaxBatchTokens = 24 });
        var outputs = RunTogether(engine, requests, [.. Enumerable.Range(0, requests.Count).Select(i => i / 3)]);

        Assert.True(engine.Preemptions > 0, "the pool was meant to be too small for all requests at once");
        Assert.True(outputs.Count > requests.Count, "some requests were meant to fork");
        int deepTotal = 0;
        foreach (var (sequence, events) in outputs)
        {
            var budget = sequence.Request.Policy.Budget!;
            int d = 0;
            for (int k = 1; k <= events.Count; k++)
            {
                d += events[k - 1].Depth >= 2 ? 1 : 0;
                Assert.True(Math.Abs(d - (budget.TargetShare!.Value * k)) < 1 + Rounding,
                    $"sequence {sequence.Id} ({sequence.Request.Policy}): {d} of {k} tokens at depth 2");
                if (budget.MaxShare is { } m)
                {
                    Assert.True(d <= m * k, $"sequence {sequence.Id}: {d} of {k} tokens at depth 2 exceeds max_share {m}");
                }
            }

            Assert.Equal(sequence.Request.MaxTokens, events.Count);
            deepTotal += d;
        }

        Assert.True(deepTotal > 0, "no budget was spent at all: the test would prove nothing");
    }

    [Fact]
    public void BatchedPreemptedAndForkedBudgetedSequencesDecideAsAlone()
    {
        var random = new Random(11);
        var requests = Enumerable.Range(0, 6)
            .Select(i => BatchRunner.Request(Prompt(random, random.Next(5, 20)), 30, Budgeted(0.2 + (0.1 * (i % 3))), seed: i * 10) with { N = i == 2 ? 3 : 1 })
            .ToList();

        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 72, BlockSize = 4, MaxBatchTokens = 64 });
        var together = RunTogether(engine, requests, [0, 0, 1, 2, 2, 3]);

        Assert.True(engine.Preemptions > 0, "the pool was meant to be too small for all requests at once");
        Assert.Equal(8, together.Count); // the forks of the third request included
        foreach (var (sequence, events) in together)
        {
            // Sample i of n draws with seed + i; alone, that is a request of its own with that seed.
            var siblings = together.Keys.Where(s => s.Request == sequence.Request).OrderBy(s => s.Id).ToList();
            var request = sequence.Request;
            var alone = request with { N = 1, Sampling = request.Sampling with { Seed = request.Sampling.Seed + siblings.IndexOf(sequence) } };
            Assert.Equal(Alone(alone), events);
        }
    }

    [Fact]
    public void TargetShareZeroRunsExactlyAsNever()
    {
        var prompt = Prompt(new Random(4), 23);
        var never = Record(BatchRunner.Request(prompt, 30, IterationPolicy.Never, seed: 5));
        var zero = Record(BatchRunner.Request(prompt, 30, Budgeted(0), seed: 5));
        var zeroCap = Record(BatchRunner.Request(prompt, 30, Budgeted(null, 0), seed: 5));

        foreach (var run in new[] { zero, zeroCap })
        {
            Assert.Equal(never.Tokens, run.Tokens);
            Assert.Equal(never.Logprobs, run.Logprobs);
            Assert.Equal(never.Positions.Count, run.Positions.Count);
            for (int p = 0; p < never.Positions.Count; p++)
            {
                Assert.Equal(never.Positions[p].Depth, run.Positions[p].Depth);
                Assert.Equal(never.Positions[p].FinalLogits, run.Positions[p].FinalLogits); // bit for bit
            }
        }

        Assert.NotEqual(never.Tokens, Record(BatchRunner.Request(prompt, 30, IterationPolicy.Always, seed: 5)).Tokens); // or equality proves nothing
    }

    [Fact]
    public void ThePrefixCacheNeverHandsABudgetedSequenceDepth2Entries()
    {
        var random = new Random(8);
        var shared = Prompt(random, 40);
        var always = BatchRunner.Request([.. shared, .. Prompt(random, 3)], 20, IterationPolicy.Always, seed: 1);
        var budgeted = BatchRunner.Request([.. shared, .. Prompt(random, 5)], 20, Budgeted(0.3), seed: 2);
        var budgetedAgain = BatchRunner.Request([.. shared, .. Prompt(random, 7)], 20, Budgeted(0.3), seed: 3);

        // `always` leaves depth-2 entries for every shared position in the cache; a budgeted sequence
        // has none there (its prompt stays at depth 1), so it may take the depth-1 blocks only.
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 160, BlockSize = 4 });
        var first = engine.Generate(always).ToList();
        long before = engine.CachedPromptTokens;
        var second = engine.Generate(budgeted).ToList();
        Assert.Equal(40, engine.CachedPromptTokens - before); // ten whole blocks of the shared prompt
        var third = engine.Generate(budgetedAgain).ToList();
        var fourth = engine.Generate(always).ToList();

        Assert.Equal(Alone(budgeted), Pairs(second));
        Assert.Equal(Alone(budgetedAgain), Pairs(third));
        Assert.Equal(Pairs(first), Pairs(fourth)); // and the budgeted ones left nothing in the way of `always`
        Assert.Equal(Alone(always), Pairs(first));
    }

    [Fact]
    public void WithTheBenchsEmulatedDeciderTheBudgetPicksTheHighestDraws()
    {
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 512, PrefixCaching = false });
        var random = new Random(5);
        var chosen = new List<double>();
        var all = new List<double>();
        for (int i = 0; i < 6; i++)
        {
            var request = BatchRunner.Request(Prompt(random, 8), 200, Budgeted(0.1, basePolicy: IterationPolicy.DeciderAtRate(0.5)), seed: i);
            var events = engine.Generate(request).ToList();
            Assert.Equal(20, events.Count(e => e.Depth == 2)); // |d - 0.1 x 200| < 1
            all.AddRange(events.Select(e => e.ContinueProbability!.Value));
            chosen.AddRange(events.Where(e => e.Depth == 2).Select(e => e.ContinueProbability!.Value));
        }

        // The draws are uniform: a blind 10% would average 0.5; the best online choice within the band about 0.86.
        Assert.True(chosen.Average() > 0.8, $"the iterated tokens' draws average {chosen.Average():0.000}");
        Assert.InRange(all.Average(), 0.45, 0.55);
    }

    [Fact]
    public void ARequestsOwnThresholdOrTargetWinsOverElasticDepth()
    {
        var elastic = new ElasticDepth(new ElasticDepthOptions { Enabled = true, MinShare = 0.01, Interval = TimeSpan.Zero, Window = 100 }, baseThreshold: 0.3);
        for (int i = 0; i < 100; i++)
        {
            elastic.Observe(i / 100.0);
        }

        var load = new LoadSignal(Waiting: 5, Running: 2, HeldBlocks: 1, TotalBlocks: 10);
        elastic.Update(load, TimeSpan.Zero);
        double raised = elastic.RaisedThreshold!.Value;
        Assert.True(raised > 0.3);

        IterationPolicy RowPolicy(IterationPolicy policy, int position = 4)
        {
            var request = new GenerationRequest { PromptTokens = [1, 2, 3], Policy = policy };
            return DepthControl.For(request, _model, elastic, population: null).RowPolicy(position, 1);
        }

        var serverDefault = IterationPolicy.Parse("decider", 0.3);
        Assert.Equal(raised, RowPolicy(serverDefault with { Elastic = true }).Threshold);
        Assert.Equal(0.3, RowPolicy(serverDefault).Threshold); // its own threshold (not marked elastic)
        Assert.Equal(IterationPolicy.Never, RowPolicy(IterationPolicy.Never with { Elastic = true }));
        Assert.Equal(IterationPolicy.Always, RowPolicy(IterationPolicy.Always));

        // A target: the budget decides; before it has probabilities of its own, as the decider it budgets.
        Assert.Equal(_model.Decider!.Threshold, RowPolicy(Budgeted(0.2), position: 2).Threshold);
        Assert.NotEqual(raised, _model.Decider!.Threshold);

        // Only a cap, threshold left to the server: the raised threshold decides, under the cap.
        var capped = Budgeted(null, 0.5) with { Elastic = true };
        var control = DepthControl.For(new GenerationRequest { PromptTokens = [1, 2, 3], Policy = capped }, _model, elastic, population: null);
        Assert.Equal(1, control.RowPolicy(2, 1).Threshold); // the first token: 1 of 1 would exceed 50%
        control.Decided(2, deeper: false, 0.1);
        Assert.Equal(raised, control.RowPolicy(3, 1).Threshold);
        Assert.Equal(IterationPolicy.Never, control.RowPolicy(1, 1)); // prompt positions of a budget stay at depth 1
    }

    [Fact]
    public void ATargetsFirstFreeDecisionsTakeThePopulationsQuantileOfThatShare()
    {
        // 200 earlier probabilities, 0.000, 0.005, ..., 0.995, in a shuffled order.
        var population = new DeciderPopulation();
        var seen = Enumerable.Range(0, 200).Select(i => i / 200.0).OrderBy(_ => Random.Shared.Next()).ToList();
        var request = new GenerationRequest { PromptTokens = [1, 2, 3], Policy = Budgeted(0.1) };
        double FirstThreshold() => DepthControl.For(request, _model, elastic: null, population).RowPolicy(2, 1).Threshold!.Value;

        foreach (double p in seen.Take(DeciderPopulation.MinObservations - 1))
        {
            population.Observe(p);
        }

        Assert.Equal(_model.Decider!.Threshold, FirstThreshold()); // too few seen: the decider's own

        foreach (double p in seen.Skip(DeciderPopulation.MinObservations - 1))
        {
            population.Observe(p);
        }

        // 10% of 200 = 20 values lie strictly above 0.895 (0.900 ... 0.995).
        Assert.Equal(0.895, FirstThreshold(), 12);
        var wider = new GenerationRequest { PromptTokens = [1, 2, 3], Policy = Budgeted(0.5) };
        Assert.Equal(0.495, DepthControl.For(wider, _model, elastic: null, population).RowPolicy(2, 1).Threshold!.Value, 12);

        // Only a cap sets no share to take a quantile of: the decider's own threshold.
        var capped = new GenerationRequest { PromptTokens = [1, 2, 3], Policy = Budgeted(null, 0.5) };
        var control = DepthControl.For(capped, _model, elastic: null, population);
        control.Decided(2, deeper: false, 0.1);
        Assert.Equal(_model.Decider!.Threshold, control.RowPolicy(3, 1).Threshold);
    }

    [Fact]
    public void OnShortAnswersASmallerTargetTakesFewerSecondPasses()
    {
        // Answers of 6 tokens: the band allows each at most one pass for targets up to 1/6, so the
        // targets differ only by which first decisions take it, the population's quantile.
        var random = new Random(8);
        var prompts = Enumerable.Range(0, 24).Select(_ => Prompt(random, random.Next(3, 12))).ToList();
        int Deep(double target)
        {
            using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 512, PrefixCaching = false });
            foreach (var prompt in prompts.Take(12))
            {
                // Plain decider requests first: the population the budgets read.
                _ = engine.Generate(BatchRunner.Request(prompt, 12, IterationPolicy.Decider, seed: 1)).ToList();
            }

            return prompts.Skip(12).Sum(prompt => engine.Generate(BatchRunner.Request(prompt, 6, Budgeted(target), seed: 1)).Count(e => e.Depth == 2));
        }

        int small = Deep(0.01), large = Deep(0.15);
        Assert.True(small < large, $"target 1%: {small} depth-2 tokens, target 15%: {large}");
    }

    [Fact]
    public void UnderRealPressureElasticRequestsYieldAndReturnWhenTheEngineIdles()
    {
        var elastic = new ElasticDepth(new ElasticDepthOptions { Enabled = true, MinShare = 0.01, Interval = TimeSpan.Zero }, baseThreshold: 0);
        var changes = new List<ElasticState>();
        elastic.Changed += (_, after) => changes.Add(after);
        var random = new Random(2);
        var requests = Enumerable.Range(0, 8)
            .Select(i => BatchRunner.Request(Prompt(random, 10), 40, IterationPolicy.Parse("decider", 0) with { Elastic = true }, seed: i))
            .ToList();
        var own = BatchRunner.Request(Prompt(random, 10), 40, IterationPolicy.Parse("decider", 0), seed: 99);

        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 256, BlockSize = 4, MaxRunning = 2, Elastic = elastic });
        var outputs = RunTogether(engine, [.. requests, own], [0, 0, 0, 0, 0, 0, 0, 0, 0]);

        Assert.Contains(changes, c => c.Raised);
        Assert.False(elastic.Current.Raised); // the load is gone: back to the default threshold
        Assert.False(changes[^1].Raised);
        var governed = outputs.Where(kv => kv.Key.Request.Policy.Elastic).SelectMany(kv => kv.Value).ToList();
        Assert.True(governed.Count(e => e.Depth == 1) > 0, "threshold 0 iterates everything: only a raised threshold leaves tokens at depth 1");

        // The request with its own threshold ignored the load: threshold 0 iterates every token, as alone.
        var mine = outputs.Single(kv => !kv.Key.Request.Policy.Elastic).Value;
        Assert.Equal(Alone(own), mine);
        Assert.All(mine, e => Assert.Equal(2, e.Depth));
    }

    private List<(int Token, int Depth)> Alone(GenerationRequest request)
    {
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 256, PrefixCaching = false });
        return Pairs(engine.Generate(request));
    }

    private static List<(int Token, int Depth)> Pairs(IEnumerable<TokenEvent> events) => [.. events.Select(e => (e.Token, e.Depth))];

    private sealed record Recorded(List<int> Tokens, List<float> Logprobs, List<PositionRecord> Positions);

    private Recorded Record(GenerationRequest request)
    {
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 256, PrefixCaching = false });
        var positions = new SortedDictionary<int, PositionRecord>();
        engine.PositionCompleted += (_, r) => positions[r.Position] = r;
        var events = engine.Generate(request with { RecordPositions = true }).ToList();
        return new([.. events.Select(e => e.Token)], [.. events.Select(e => e.Sample.Logprob)], [.. positions.Values]);
    }

    /// <summary>Requests added before the steps given, run until the engine idles; every sequence's tokens and depths (forks included).</summary>
    private static Dictionary<Sequence, List<(int Token, int Depth)>> RunTogether(InferenceEngine engine, IReadOnlyList<GenerationRequest> requests, IReadOnlyList<int> arrivals)
    {
        var outputs = new Dictionary<Sequence, List<(int, int)>>();
        for (int step = 0; step <= arrivals.Max() || engine.HasWork; step++)
        {
            for (int i = 0; i < requests.Count; i++)
            {
                if (arrivals[i] == step)
                {
                    engine.Add(requests[i]);
                }
            }

            foreach (var (sequence, e) in engine.Step())
            {
                (outputs.TryGetValue(sequence, out var list) ? list : outputs[sequence] = []).Add((e.Token, e.Depth));
            }

            Assert.True(step < 100_000, "the engine stopped making progress");
        }

        return outputs;
    }

    private static int[] Prompt(Random random, int length) => [.. Enumerable.Range(0, length).Select(_ => random.Next(3, 512))];
}
