using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.Serving;
using TaH.Engine.TaH;

namespace TaH.Engine.Tests.Serving;

public sealed class EngineLoopTests : IDisposable
{
    private readonly TaHModel _model = ModelLoader.Load(Fixtures.TinyCheckpoint("a"));

    public void Dispose() => _model.Dispose();

    [Fact]
    public async Task ConcurrentRequestsGetTheTokensEachWouldGetAlone()
    {
        var requests = new[]
        {
            Greedy([5, 77, 301, 42], 12, IterationPolicy.Decider),
            Greedy([9, 250, 17, 88, 499, 3, 128], 9, IterationPolicy.Always),
            Greedy([64], 15, IterationPolicy.Never),
        };
        var alone = requests.Select(r => Inspection.Run(_model, r.PromptTokens, r.Policy, r.MaxTokens).GreedyTokens).ToArray();

        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 64 });
        using var metrics = new TaHMetrics();
        using var loop = new EngineLoop(engine, metrics);
        using var stop = new CancellationTokenSource();
        var running = loop.RunAsync(stop.Token);
        var streams = requests.Select(r => loop.Submit(r)).ToArray();
        var together = await Task.WhenAll(streams.Select(async s => (await Collect(s)).Select(e => e.Token).ToArray()));

        for (int i = 0; i < requests.Length; i++)
        {
            Assert.Equal(alone[i], together[i]);
        }

        stop.Cancel();
        await running;
        Assert.Equal(engine.Cache.TotalBlocks, engine.Cache.FreeBlocks);
    }

    [Fact]
    public async Task CancellingARequestFreesItsBlocks()
    {
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 64 });
        using var metrics = new TaHMetrics();
        using var loop = new EngineLoop(engine, metrics);
        using var stop = new CancellationTokenSource();
        var running = loop.RunAsync(stop.Token);

        using var client = new CancellationTokenSource();
        var request = Greedy([5, 77, 301], 400, IterationPolicy.Always) with { IgnoreEos = true };
        var stream = loop.Submit(request, client.Token);
        int received = 0;
        await foreach (var _ in stream.Tokens.ReadAllAsync())
        {
            if (++received == 5)
            {
                Assert.True(engine.Cache.FreeBlocks < engine.Cache.TotalBlocks);
                client.Cancel();
            }
        }

        Assert.InRange(received, 5, 399);
        await WaitUntil(() => loop.Snapshot.Running == 0);
        Assert.Equal(engine.Cache.TotalBlocks, engine.Cache.FreeBlocks);
        stop.Cancel();
        await running;
    }

    [Fact]
    public void AFullQueueRefusesNewRequests()
    {
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 64, MaxRunning = 1 });
        using var metrics = new TaHMetrics();
        using var loop = new EngineLoop(engine, metrics, new EngineLoopOptions { MaxWaiting = 2 });

        // The loop is not running, so submissions stay queued: one for the free running slot, two waiting.
        for (int i = 0; i < 3; i++)
        {
            loop.Submit(Greedy([1, 2], 4, IterationPolicy.Never));
        }

        var e = Assert.Throws<EngineOverloadedException>(() => loop.Submit(Greedy([1, 2], 4, IterationPolicy.Never)));
        Assert.Contains("queue is full", e.Message);
    }

    [Fact]
    public void ABurstOnAnIdleEngineCountsFreeRunningSlotsAsNotWaiting()
    {
        // --max-waiting 4 --max-running 2: six requests at once on an idle engine, two of which
        // start at once, are not a full queue; the seventh is.
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 64, MaxRunning = 2 });
        using var metrics = new TaHMetrics();
        using var loop = new EngineLoop(engine, metrics, new EngineLoopOptions { MaxWaiting = 4 });
        for (int i = 0; i < 6; i++)
        {
            loop.Submit(Greedy([1, 2], 4, IterationPolicy.Never));
        }

        Assert.Throws<EngineOverloadedException>(() => loop.Submit(Greedy([1, 2], 4, IterationPolicy.Never)));
    }

    [Fact]
    public void ARequestLargerThanThePoolIsRefusedByName()
    {
        // 16 blocks of 16 over 2 depths: 8 per depth, 1 for the prompt, 2 kept for copies: 80 tokens.
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 16, BlockSize = 16 });
        using var metrics = new TaHMetrics();
        using var loop = new EngineLoop(engine, metrics);
        var e = Assert.Throws<InvalidRequestException>(() => loop.Submit(Greedy([1, 2, 3], 500, IterationPolicy.Always)));
        Assert.Contains("max_tokens", e.Message);
        Assert.Equal(RequestFields.MaxTokens, e.Param);
        Assert.Equal(RequestFields.KvCacheTooSmall, e.Code);
    }

    [Fact]
    public async Task DrainingRefusesNewWorkAndTellsUnfinishedRequests()
    {
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 64 });
        using var metrics = new TaHMetrics();
        using var loop = new EngineLoop(engine, metrics);
        using var stop = new CancellationTokenSource();
        var running = loop.RunAsync(stop.Token);
        var stream = loop.Submit(Greedy([5, 77], 400, IterationPolicy.Never) with { IgnoreEos = true });
        await stream.Tokens.ReadAsync();

        await loop.DrainAsync(TimeSpan.FromMilliseconds(50));
        await Assert.ThrowsAsync<EngineStoppingException>(async () =>
        {
            await foreach (var _ in stream.Tokens.ReadAllAsync())
            {
            }
        });
        Assert.Throws<EngineStoppingException>(() => loop.Submit(Greedy([1], 2, IterationPolicy.Never)));
        Assert.Equal(engine.Cache.TotalBlocks, engine.Cache.FreeBlocks);
        stop.Cancel();
        await running;
    }

    private static GenerationRequest Greedy(int[] prompt, int maxTokens, IterationPolicy policy) => new()
    {
        PromptTokens = prompt,
        MaxTokens = maxTokens,
        Policy = policy,
        Sampling = SamplingParams.Greedy,
        IgnoreEos = true,
    };

    private static async Task<List<TokenEvent>> Collect(RequestStream stream)
    {
        var events = new List<TokenEvent>();
        await foreach (var e in stream.Tokens.ReadAllAsync())
        {
            events.Add(e);
        }

        return events;
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        for (int i = 0; i < 500 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition());
    }
}
