using TaH.Engine.Generation;
using TaH.Engine.Kv;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TorchSharp;

namespace TaH.Engine.Tests.Kv;

/// <summary>
/// The scheduler's choices, without a model: which sequences it admits and in what order, how it
/// cuts prompts to the row budget, and whom it preempts when blocks run out. A step "runs" by
/// marking its rows done and appending a token to each sequence that decoded.
/// </summary>
public sealed class SchedulerTests : IDisposable
{
    private readonly List<Sequence> _sequences = [];
    private KvCache? _cache;

    public void Dispose()
    {
        foreach (var s in _sequences)
        {
            s.Dispose();
        }

        _cache?.Dispose();
    }

    private Scheduler Create(int blocks, int maxRunning = 8, int maxBatchTokens = 64)
    {
        _cache = new KvCache(layers: 1, kvHeads: 1, headDim: 2, blocks, blockSize: 2, torch.ScalarType.Float32, torch.CPU, maxDepth: 1);
        return new Scheduler(_cache, new EngineOptions { KvBlocks = blocks, BlockSize = 2, MaxRunning = maxRunning, MaxBatchTokens = maxBatchTokens, PrefixCaching = false });
    }

    private Sequence Add(Scheduler scheduler, int promptTokens)
    {
        var request = new GenerationRequest { PromptTokens = [.. Enumerable.Range(1, promptTokens)], Policy = IterationPolicy.Never, Sampling = SamplingParams.Greedy };
        var sequence = new Sequence(_sequences.Count, request, _cache!, 1, new Sampler(request.Sampling, []), policyKey: null, matcher: null);
        _sequences.Add(sequence);
        scheduler.Enqueue(sequence);
        return sequence;
    }

    /// <summary>Schedules a step and "runs" it: rows done, a token appended where the prompt is complete.</summary>
    private static StepPlan Step(Scheduler scheduler)
    {
        var plan = scheduler.Schedule();
        foreach (var s in plan.Sequences)
        {
            s.RowsRan();
            if (s.PendingTokens == 0)
            {
                s.Append(7);
            }
        }

        return plan;
    }

    private static int RowsOf(StepPlan plan, Sequence s) => plan.Owners.Count(o => o == s);

    [Fact]
    public void WaitingSequencesAreAdmittedInArrivalOrderUpToMaxRunning()
    {
        var scheduler = Create(blocks: 16, maxRunning: 2);
        var (a, b, c) = (Add(scheduler, 3), Add(scheduler, 3), Add(scheduler, 3));
        var plan = Step(scheduler);
        Assert.Equal([a, b], plan.Sequences);
        Assert.Equal(SequenceStatus.Waiting, c.Status);
        Assert.Equal((2, 1), (scheduler.RunningCount, scheduler.WaitingCount));
    }

    [Fact]
    public void APromptIsCutToTheRowBudgetAndRidesWithDecodes()
    {
        var scheduler = Create(blocks: 16, maxBatchTokens: 6);
        var a = Add(scheduler, 4);
        var b = Add(scheduler, 5);
        var first = Step(scheduler);
        Assert.Equal((4, 2), (RowsOf(first, a), RowsOf(first, b)));

        // Next step: a's decode token first (running sequences go first), then the rest of b's prompt.
        var second = Step(scheduler);
        Assert.Equal((1, 3), (RowsOf(second, a), RowsOf(second, b)));
        Assert.Equal(1, b.GeneratedCount); // its prompt is done and its first token sampled
    }

    [Fact]
    public void AdmissionWaitsForBlocksWithoutLettingALaterSequenceJumpTheQueue()
    {
        var scheduler = Create(blocks: 4);
        var a = Add(scheduler, 5); // 3 blocks
        var b = Add(scheduler, 3); // 2 blocks: only 1 left
        var c = Add(scheduler, 1); // 1 block would fit, but comes after b
        var plan = Step(scheduler);
        Assert.Equal([a], plan.Sequences);
        Assert.Equal([SequenceStatus.Waiting, SequenceStatus.Waiting], new[] { b.Status, c.Status });
    }

    [Fact]
    public void WhenBlocksRunOutTheNewestRunningSequenceIsPreemptedAndQueuedFirst()
    {
        var scheduler = Create(blocks: 4);
        var a = Add(scheduler, 3);
        var b = Add(scheduler, 3);
        Step(scheduler); // both prompts: 2 blocks each, the pool is full
        Step(scheduler); // both decode their 4th token into their second block

        // Each now needs a third block for its 5th entry: the newer one (b) gives its blocks back.
        var plan = Step(scheduler);
        Assert.Equal([a], plan.Sequences);
        Assert.Equal(1, scheduler.Preemptions);
        Assert.Equal(SequenceStatus.Waiting, b.Status);
        Assert.Equal(1, b.Preemptions);
        Assert.Equal(0, b.Kv.Count(1)); // its entries are gone, to be recomputed
        Assert.Equal(5, b.Tokens.Count); // its tokens are not
        Assert.Equal(1, scheduler.WaitingCount);

        // It comes back first once blocks free up, ahead of a newer arrival.
        var c = Add(scheduler, 1);
        _sequences.Remove(a);
        scheduler.Remove(a);
        a.Dispose();
        var after = Step(scheduler);
        Assert.Equal([b, c], after.Sequences);
        Assert.Equal(SequenceStatus.Running, b.Status);
        Assert.Equal(5, RowsOf(after, b)); // recomputed from its tokens
    }

    [Fact]
    public void ASequenceThatCannotFitEvenAloneStepsBack()
    {
        var scheduler = Create(blocks: 2);
        var a = Add(scheduler, 3);
        Step(scheduler); // 2 blocks, its first token sampled
        Step(scheduler); // 4 entries fill them

        var plan = Step(scheduler); // a 5th entry needs a third block; nothing newer to preempt
        Assert.Empty(plan.Sequences);
        Assert.Equal(SequenceStatus.Waiting, a.Status);
        Assert.Equal(1, scheduler.Preemptions);
        Assert.Equal(2, _cache!.FreeBlocks);
    }
}
