using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.TaH;

namespace TaH.Engine.Tests.Batching;

/// <summary>
/// Batching must not change what a request gets: whatever the mix of prompt lengths, arrival
/// times, chunking, preemption, prefix-cache hits and forks, tokens and their depths equal those
/// of the request run alone. Logits may differ in the order of their sums only
/// (<see cref="Fp32Tolerance.ReductionOrder"/>).
/// </summary>
public sealed class ContinuousBatchingTests : IDisposable
{
    private readonly Dictionary<string, TaHModel> _models = new()
    {
        ["a"] = ModelLoader.Load(Fixtures.TinyCheckpoint("a")),
        ["b"] = ModelLoader.Load(Fixtures.TinyCheckpoint("b")),
    };

    public void Dispose()
    {
        foreach (var model in _models.Values)
        {
            model.Dispose();
        }
    }

    public static TheoryData<string, string> Cases() => new()
    {
        { "a", "never" }, { "a", "always" }, { "a", "decider" },
        { "b", "never" }, { "b", "always" }, { "b", "decider" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void MixedLengthsAndArrivalsEqualRunningAlone(string checkpoint, string policy)
    {
        var model = _models[checkpoint];
        var random = new Random(checkpoint.GetHashCode(StringComparison.Ordinal) ^ policy.Length);
        var requests = Enumerable.Range(0, 6)
            .Select(i => BatchRunner.Request(Prompt(random, random.Next(1, 60)), random.Next(5, 30), IterationPolicy.Parse(policy)))
            .ToList();
        int[] arrivals = [0, 0, 1, 3, 4, 9];

        // A small row budget forces long prompts into chunks that ride with other sequences' decodes.
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = 128, BlockSize = 4, MaxBatchTokens = 13 });
        var together = BatchRunner.Together(engine, requests, arrivals);

        Assert.Equal(requests.Count, together.Count);
        var ordered = together.OrderBy(kv => kv.Key).Select(kv => kv.Value).ToList();
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(BatchRunner.Alone(model, requests[i]), ordered[i]);
        }

        Assert.Equal(0, engine.RunningCount + engine.WaitingCount);
    }

    [Theory]
    [InlineData("a", "decider")]
    [InlineData("b", "always")]
    public void PreemptionUnderASmallPoolLosesNothing(string checkpoint, string policy)
    {
        var model = _models[checkpoint];
        var random = new Random(7);
        var requests = Enumerable.Range(0, 5)
            .Select(_ => BatchRunner.Request(Prompt(random, random.Next(5, 20)), 24, IterationPolicy.Parse(policy)))
            .ToList();

        // Each request alone needs at most 2 x 11 blocks of 4; five together need far more than 30.
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = 30, BlockSize = 4, MaxBatchTokens = 64 });
        var together = BatchRunner.Together(engine, requests, [0, 0, 0, 0, 0], (e, _) => Assert.True(e.Cache.FreeBlocks >= 0));

        Assert.True(engine.Preemptions > 0, "the pool was meant to be too small for all requests at once");
        var ordered = together.OrderBy(kv => kv.Key).Select(kv => kv.Value).ToList();
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(24, ordered[i].Count);
            Assert.Equal(BatchRunner.Alone(model, requests[i]), ordered[i]);
        }

        Assert.Equal(engine.Cache.TotalBlocks, engine.Cache.FreeBlocks);
    }

    [Fact]
    public void CancellationReturnsEveryBlock()
    {
        var model = _models["a"];
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = 64, BlockSize = 4, PrefixCaching = false });
        var random = new Random(3);
        var sequences = Enumerable.Range(0, 4)
            .Select(_ => engine.Add(BatchRunner.Request(Prompt(random, 30), 80, IterationPolicy.Always)))
            .ToList();
        for (int i = 0; i < 6; i++)
        {
            engine.Step();
        }

        Assert.True(engine.Cache.FreeBlocks < engine.Cache.TotalBlocks);
        foreach (var sequence in sequences)
        {
            engine.Cancel(sequence);
        }

        Assert.Equal(engine.Cache.TotalBlocks, engine.Cache.FreeBlocks);
        Assert.Equal(0, engine.Cache.UsedBlocks(1) + engine.Cache.UsedBlocks(2));
        Assert.False(engine.HasWork);
    }

    [Theory]
    [InlineData("a", "decider")]
    [InlineData("a", "always")]
    [InlineData("b", "decider")]
    [InlineData("b", "never")]
    public void PrefixCacheHitsGiveIdenticalOutputs(string checkpoint, string policy)
    {
        var model = _models[checkpoint];
        var random = new Random(11);
        var shared = Prompt(random, 37);
        var first = BatchRunner.Request([.. shared, .. Prompt(random, 5)], 12, IterationPolicy.Parse(policy));
        var second = BatchRunner.Request([.. shared, .. Prompt(random, 9)], 12, IterationPolicy.Parse(policy));
        var again = first;

        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = 96, BlockSize = 4 });
        var firstTokens = engine.Generate(first).Select(e => (e.Token, e.Depth)).ToArray();
        long before = engine.CachedPromptTokens;
        var secondTokens = engine.Generate(second).Select(e => (e.Token, e.Depth)).ToArray();
        long reusedBySecond = engine.CachedPromptTokens - before;
        var againTokens = engine.Generate(again).Select(e => (e.Token, e.Depth)).ToArray();

        Assert.Equal(36, reusedBySecond); // nine whole blocks of the shared 37 tokens
        Assert.True(engine.CachedPromptTokens - before - reusedBySecond >= 40, "the repeated prompt should reuse its own blocks");
        Assert.Equal(BatchRunner.Alone(model, first), firstTokens);
        Assert.Equal(BatchRunner.Alone(model, second), secondTokens);
        Assert.Equal(firstTokens, againTokens);
    }

    [Fact]
    public void ParallelSamplesShareThePromptAndEqualSeparateRuns()
    {
        var model = _models["b"];
        var prompt = Prompt(new Random(5), 29);
        var request = BatchRunner.Request(prompt, 10, IterationPolicy.Decider, seed: 100) with { N = 3 };

        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = 64, BlockSize = 4, PrefixCaching = false });
        var together = BatchRunner.Together(engine, [request], [0], (e, step) =>
        {
            if (step == 1)
            {
                // After the fork, three sequences hold the prompt's seven full blocks once.
                Assert.True(e.Cache.UsedBlocks(1) < 2 * 8, $"depth-1 blocks in use: {e.Cache.UsedBlocks(1)}");
            }
        });

        Assert.Equal(3, together.Count);
        var samples = together.OrderBy(kv => kv.Key).Select(kv => kv.Value).ToList();
        for (int i = 0; i < 3; i++)
        {
            var alone = BatchRunner.Request(prompt, 10, IterationPolicy.Decider, seed: 100 + i);
            Assert.Equal(BatchRunner.Alone(model, alone), samples[i]);
        }

        Assert.NotEqual(samples[0], samples[1]);
        Assert.Equal(engine.Cache.TotalBlocks, engine.Cache.FreeBlocks);
    }

    [Fact]
    public void ChunkedPrefillEqualsOnePrefillPositionByPosition()
    {
        var model = _models["a"];
        var prompt = Prompt(new Random(9), 50);
        var whole = Record(model, prompt, new EngineOptions { KvBlocks = 64 });
        var chunked = Record(model, prompt, new EngineOptions { KvBlocks = 64, BlockSize = 4, MaxBatchTokens = 6 });
        Assert.Equal(whole.Select(r => r.Depth), chunked.Select(r => r.Depth));
        for (int p = 0; p < whole.Count; p++)
        {
            float worst = whole[p].FinalLogits.Zip(chunked[p].FinalLogits, (x, y) => Math.Abs(x - y)).Max();
            Assert.True(worst <= Fp32Tolerance.ReductionOrder, $"position {p} (depth {whole[p].Depth}): logits differ by {worst:E2}");
        }
    }

    private static List<PositionRecord> Record(TaHModel model, int[] prompt, EngineOptions options)
    {
        using var engine = new InferenceEngine(model, options);
        var records = new SortedDictionary<int, PositionRecord>();
        engine.PositionCompleted += (_, r) => records[r.Position] = r;
        foreach (var _ in engine.Generate(BatchRunner.Request(prompt, 1, IterationPolicy.Decider) with { RecordPositions = true }))
        {
        }

        return [.. records.Values];
    }

    private static int[] Prompt(Random random, int length) => [.. Enumerable.Range(0, length).Select(_ => random.Next(3, 512))];
}
