using TaH.Engine.Kv;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Kernels;
using TaH.Kernels.Cpu;
using TorchSharp;

namespace TaH.Engine.Generation;

/// <summary>Sizes of the engine's KV pool and batches.</summary>
public sealed record EngineOptions
{
    /// <summary>Entries per KV block.</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>Blocks in the pool (shared by all depths and sequences).</summary>
    public int KvBlocks { get; init; } = 1024;

    /// <summary>The longest sequence (prompt + output) served; defaults to the model's max_position_embeddings.</summary>
    public int? MaxModelLength { get; init; }

    /// <summary>Rows one forward carries at most (prompt chunks are cut to fit).</summary>
    public int MaxBatchTokens { get; init; } = 512;

    /// <summary>Sequences decoded together at most.</summary>
    public int MaxRunning { get; init; } = 64;

    /// <summary>Reuse the KV blocks of prompts that start the same way.</summary>
    public bool PrefixCaching { get; init; } = true;

    /// <summary>Thinking that yields under load: raises the threshold of elastic requests while the engine is under pressure.</summary>
    public ElasticDepth? Elastic { get; init; }

    /// <summary>Most parallel samples (n) of one request.</summary>
    public int MaxSamples { get; init; } = 16;

    /// <summary>
    /// Sample a lone decode row's token on a kernel worker while the decider judges it, undoing
    /// the draw when the position goes deeper: the same tokens, with the decider's time hidden.
    /// Only where the decider runs on the CPU kernels (bf16, q8_0, q4_0): with fp32 weights torch's
    /// OpenMP threads run it, and a worker lent beside them made a 0.6B token 2.7% slower.
    /// </summary>
    public bool SampleAhead { get; init; } = true;
}

/// <summary>
/// Runs sequences step by step: each step is one forward over the rows the scheduler picked
/// (prompt chunks, new tokens, latent iterations of any sequence), then sampling wherever a
/// position stopped.
/// </summary>
public sealed class InferenceEngine : IDisposable
{
    private readonly IPagedAttention _attention;
    private readonly Scheduler _scheduler;
    private readonly List<Sequence> _sequences = [];
    private readonly DeciderPopulation _population = new();
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    private int _nextId;

    public InferenceEngine(TaHModel model, EngineOptions? options = null, IPagedAttention? attention = null)
    {
        Model = model;
        Options = options ?? new EngineOptions();
        _attention = attention ?? FusedOps.AttentionFor(model.Base.Device);
        var c = model.Config;
        Cache = new KvCache(c.NumHiddenLayers, c.NumKeyValueHeads, c.HeadDim, Options.KvBlocks, Options.BlockSize, model.Base.DType, model.Base.Device, model.MaxDepth);
        MaxModelLength = Math.Min(Options.MaxModelLength ?? c.MaxPositionEmbeddings, c.MaxPositionEmbeddings);
        Admission = new AdmissionGate(ServedModel.Describe(model, Cache.Budget, MaxModelLength, Options.MaxSamples));
        _scheduler = new Scheduler(Cache, Options);
    }

    public TaHModel Model { get; }

    public EngineOptions Options { get; }

    public KvCache Cache { get; }

    public int MaxModelLength { get; }

    /// <summary>The one check of every request, before it may run here.</summary>
    public AdmissionGate Admission { get; }

    /// <summary>What this engine serves, as a server reads it.</summary>
    public ServedModel Served => Admission.Model;

    public bool HasWork => _sequences.Any(s => s.HasWork);

    public int RunningCount => _scheduler.RunningCount;

    public int WaitingCount => _scheduler.WaitingCount;

    /// <summary>Times a running sequence gave its blocks back to be recomputed later.</summary>
    public long Preemptions => _scheduler.Preemptions;

    /// <summary>Tokens sampled while the decider judged their position (kept, or undone when it went deeper).</summary>
    public long SamplesTakenAhead { get; private set; }

    /// <summary>Prompt tokens whose keys and values came from the prefix cache.</summary>
    public long CachedPromptTokens => _scheduler.CachedPromptTokens;

    /// <summary>Called for each position that completes, when a request records positions.</summary>
    public event Action<Sequence, PositionRecord>? PositionCompleted;

    /// <summary>
    /// Admits a request (<see cref="AdmissionGate"/>: a refusal is an <see cref="InvalidRequestException"/>)
    /// and queues it. With n &gt; 1 the first sequence is returned; its forks appear in the events
    /// once its prompt has been computed.
    /// </summary>
    public Sequence Add(GenerationRequest request) => Add(Admission.Admit(request));

    /// <summary>Queues a request the gate has admitted.</summary>
    public Sequence Add(AdmittedRequest admitted)
    {
        var request = admitted.Request;
        var sequence = NewSequence(request, new Sampler(request.Sampling, request.PromptTokens.ToArray()));
        _scheduler.Enqueue(sequence);
        return sequence;
    }

    /// <summary>The tokens that end a sequence, which a constraint allows once its output is complete.</summary>
    private IEnumerable<int> Terminators(GenerationRequest request) => Model.EosTokenIds.Concat(request.StopTokenIds);

    /// <summary>Stops a sequence (waiting or running) and frees its blocks.</summary>
    public void Cancel(Sequence sequence)
    {
        sequence.Finish(FinishReason.Cancelled);
        Remove(sequence);
    }

    /// <summary>One forward over the scheduled rows; returns the tokens it produced.</summary>
    public IReadOnlyList<(Sequence Sequence, TokenEvent Event)> Step()
    {
        var plan = _scheduler.Schedule();
        if (plan.Rows.Count == 0)
        {
            return [];
        }

        // A row the decider judges may be sampled while it decides (see SampleAhead).
        SampleAhead? started = null;
        StepRowResult[] results;
        try
        {
            results = Model.Step(plan.Rows, Cache, _attention, Options.SampleAhead && Model.Decider is { OnCpuKernels: true }
                ? (row, logits) => started = SampleAhead.Start(plan.Owners[row], plan.Rows[row], row, logits, CpuWorkerPool.Shared)
                : null);
        }
        catch
        {
            started?.Dispose();
            throw;
        }

        using var ahead = started;
        SamplesTakenAhead += ahead is null ? 0 : 1;
        foreach (var sequence in plan.Sequences)
        {
            sequence.RowsRan();
        }

        // Positions that stopped and whose logits someone wants; latent results carry on.
        var stopped = new List<(Sequence Sequence, StepRow Row, double? Probability, torch.Tensor Logits)>();
        int aheadStopped = -1;
        for (int i = 0; i < plan.Rows.Count; i++)
        {
            var result = results[i];
            if (plan.Rows[i].Depth == 1)
            {
                plan.Owners[i].Depths.Decided(plan.Rows[i].Position, result.Next is not null, result.ContinueProbability);
            }

            if (result.Next is { } next)
            {
                plan.Owners[i].GoDeeper(next);
            }
            else if (result.FinalLogits is { } logits)
            {
                aheadStopped = ahead?.Row == i ? stopped.Count : aheadStopped;
                stopped.Add((plan.Owners[i], plan.Rows[i], result.ContinueProbability, logits));
            }
        }

        // The sample taken ahead stands when its position stopped; its logits are floats already.
        SampledToken? aheadToken = aheadStopped >= 0 ? ahead!.Take() : null;
        using var floats = new LogitRows([.. stopped.Select((s, j) => j == aheadStopped ? null : s.Logits)]);
        ReadOnlyMemory<float> Floats(int j) => j == aheadStopped ? ahead!.Logits : floats[j];
        foreach (var result in results)
        {
            result.Dispose();
        }

        var draws = new List<(Sequence Sequence, ReadOnlyMemory<float> Logits, int Depth, double? Probability)>();
        for (int i = 0; i < stopped.Count; i++)
        {
            var (sequence, row, probability, _) = stopped[i];
            if (sequence.Request.RecordPositions)
            {
                PositionCompleted?.Invoke(sequence, new PositionRecord(row.Position, sequence.Tokens[row.Position], row.Depth, probability, Floats(i).ToArray()));
            }

            if (sequence.IsLast(row.Position) && sequence.Finished is null)
            {
                // The prompt's last position gives every parallel sample its first token.
                var samples = sequence.Request.N > 1 && sequence.GeneratedCount == 0 ? [.. Fork(sequence), sequence] : new[] { sequence };
                draws.AddRange(samples.Select(s => (s, Floats(i), row.Depth, probability)));
            }
        }

        var sampled = new SampledToken[draws.Count];
        SampledToken Draw(int i) => aheadToken is { } token && draws[i].Sequence == ahead!.Sequence
            ? token
            : draws[i].Sequence.Sampler.Sample(draws[i].Logits.Span, draws[i].Sequence.Mask());

        // Sampling touches one sequence each, so it runs in parallel too (its mask included).
        RowParallel.For(draws.Count, i => sampled[i] = Draw(i));
        var events = new List<(Sequence, TokenEvent)>(draws.Count);
        for (int i = 0; i < draws.Count; i++)
        {
            events.Add((draws[i].Sequence, Accept(draws[i].Sequence, sampled[i], draws[i].Depth, draws[i].Probability)));
        }

        foreach (var sequence in plan.Sequences)
        {
            if (Options.PrefixCaching && sequence.Status != SequenceStatus.Waiting)
            {
                sequence.RegisterPrefix();
            }

            if (sequence.IsDone)
            {
                Remove(sequence);
            }
        }

        Options.Elastic?.Update(new LoadSignal(_scheduler.WaitingCount, _scheduler.RunningCount, Cache.TotalBlocks - Cache.FreeBlocks, Cache.TotalBlocks), _clock.Elapsed);
        return events;
    }

    /// <summary>Runs one request to the end, yielding its tokens as they come.</summary>
    public IEnumerable<TokenEvent> Generate(GenerationRequest request)
    {
        var sequence = Add(request);
        try
        {
            while (!sequence.IsDone)
            {
                foreach (var (owner, e) in Step())
                {
                    if (owner == sequence)
                    {
                        yield return e;
                    }
                }
            }
        }
        finally
        {
            if (!sequence.IsDone)
            {
                Cancel(sequence);
            }
        }
    }

    private Sequence NewSequence(GenerationRequest request, Sampler sampler)
    {
        var sequence = new Sequence(_nextId++, request, Cache, Model.MaxDepth, sampler, DepthControl.For(request, Model, Options.Elastic, _population), request.Constraint?.CreateMatcher(Terminators(request)));
        _sequences.Add(sequence);
        return sequence;
    }

    /// <summary>The n - 1 parallel samples of a sequence whose prompt has just been computed.</summary>
    private IEnumerable<Sequence> Fork(Sequence parent)
    {
        var request = parent.Request;
        var forks = new List<Sequence>();
        for (int i = 1; i < request.N; i++)
        {
            if (Cache.FreeBlocks < parent.Kv.BlocksToFork())
            {
                break; // no room to copy its part-filled blocks; fewer samples than asked
            }

            var sampling = request.Sampling with { Seed = request.Sampling.Seed is { } seed ? seed + i : null };
            var fork = parent.Fork(_nextId++, new Sampler(sampling, request.PromptTokens.ToArray()));
            _sequences.Add(fork);
            _scheduler.AddRunning(fork);
            forks.Add(fork);
        }

        return forks;
    }

    private TokenEvent Accept(Sequence sequence, SampledToken sample, int depth, double? probability)
    {
        sequence.Sampler.Accept(sample.TokenId);
        sequence.Append(sample.TokenId);
        if (sequence.Matcher is { } matcher && !matcher.Accept(sample.TokenId))
        {
            throw new InvalidOperationException($"token {sample.TokenId} was sampled but the constraint ({matcher.Constraint.Description}) does not allow it");
        }

        var request = sequence.Request;
        FinishReason? finish = null;
        // ignore_eos passes the EOS ids only; stop_token_ids still stop (vLLM's stop check).
        if ((!request.IgnoreEos && Model.EosTokenIds.Contains(sample.TokenId)) || request.StopTokenIds.Contains(sample.TokenId))
        {
            finish = sequence.Matcher?.IsCutShort == true ? FinishReason.Length : FinishReason.Stop;
        }
        else if (sequence.GeneratedCount >= request.MaxTokens || sequence.Tokens.Count >= MaxModelLength)
        {
            finish = FinishReason.Length;
        }

        if (finish is { } reason)
        {
            sequence.Finish(reason);
        }

        return new TokenEvent(sample.TokenId, depth, probability, sample, finish);
    }

    private void Remove(Sequence sequence)
    {
        _scheduler.Remove(sequence);
        if (_sequences.Remove(sequence))
        {
            sequence.Dispose();
        }
    }

    public void Dispose()
    {
        foreach (var sequence in _sequences)
        {
            sequence.Dispose();
        }

        _sequences.Clear();
        Cache.Dispose();
    }
}
