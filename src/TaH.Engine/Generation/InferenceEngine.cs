using TaH.Engine.Kv;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Kernels;
using TorchSharp;

namespace TaH.Engine.Generation;

/// <summary>Sizes of the engine's KV pool.</summary>
public sealed record EngineOptions
{
    /// <summary>Entries per KV block.</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>Blocks in the pool (shared by all depths and sequences).</summary>
    public int KvBlocks { get; init; } = 1024;

    /// <summary>The longest sequence (prompt + output) served; defaults to the model's max_position_embeddings.</summary>
    public int? MaxModelLength { get; init; }

    /// <summary>Enough blocks for one request at every depth.</summary>
    public static int BlocksFor(GenerationRequest request, int maxDepth, int blockSize = 16) =>
        maxDepth * (((request.PromptTokens.Count + request.MaxTokens + blockSize) / blockSize) + 1);
}

/// <summary>
/// Runs sequences step by step: each step is one forward over every sequence's pending rows
/// (prompt tokens, new tokens, latent iterations), then sampling where a position finished.
/// </summary>
public sealed class InferenceEngine : IDisposable
{
    private readonly List<Sequence> _running = [];
    private readonly IPagedAttention _attention;
    private int _nextId;

    public InferenceEngine(TaHModel model, EngineOptions? options = null, IPagedAttention? attention = null)
    {
        Model = model;
        Options = options ?? new EngineOptions();
        _attention = attention ?? FusedOps.AttentionFor(model.Base.Device);
        var c = model.Config;
        Cache = new KvCache(c.NumHiddenLayers, c.NumKeyValueHeads, c.HeadDim, Options.KvBlocks, Options.BlockSize, model.Base.DType, model.Base.Device);
        MaxModelLength = Math.Min(Options.MaxModelLength ?? c.MaxPositionEmbeddings, c.MaxPositionEmbeddings);
    }

    public TaHModel Model { get; }

    public EngineOptions Options { get; }

    public KvCache Cache { get; }

    public int MaxModelLength { get; }

    public bool HasWork => _running.Any(s => s.HasWork);

    public int RunningCount => _running.Count;

    /// <summary>Called for each position that completes, when a request records positions.</summary>
    public event Action<Sequence, PositionRecord>? PositionCompleted;

    /// <summary>Validates a request and starts it; bad input throws <see cref="ArgumentException"/> naming the problem.</summary>
    public Sequence Add(GenerationRequest request)
    {
        Validate(request);
        var sequence = new Sequence(
            _nextId++,
            request,
            new SequenceKv(Cache, Model.MaxDepth),
            new Sampler(request.Sampling, request.PromptTokens.ToArray()));
        _running.Add(sequence);
        return sequence;
    }

    public void Validate(GenerationRequest request)
    {
        if (request.PromptTokens.Count == 0)
        {
            throw new ArgumentException("the prompt is empty", nameof(request));
        }

        int vocab = Model.Config.VocabSize;
        foreach (int token in request.PromptTokens)
        {
            if (token < 0 || token >= vocab)
            {
                throw new ArgumentException($"prompt token id {token} is outside the vocabulary (0..{vocab - 1})", nameof(request));
            }
        }

        if (request.PromptTokens.Count >= MaxModelLength)
        {
            throw new ArgumentException($"the prompt has {request.PromptTokens.Count} tokens, but the model's context is {MaxModelLength} tokens (prompt plus at least one generated token)", nameof(request));
        }

        if (request.MaxTokens < 1)
        {
            throw new ArgumentException($"max_tokens must be at least 1 (got {request.MaxTokens})", nameof(request));
        }

        if (Model.Supports(request.Policy) is { } problem)
        {
            throw new ArgumentException(problem, nameof(request));
        }

        request.Sampling.Validate();
    }

    /// <summary>Stops a sequence and frees its blocks.</summary>
    public void Cancel(Sequence sequence)
    {
        sequence.Finish(FinishReason.Cancelled);
        Remove(sequence);
    }

    /// <summary>One forward over all pending rows; returns the tokens it produced.</summary>
    public IReadOnlyList<(Sequence Sequence, TokenEvent Event)> Step()
    {
        var active = _running.Where(s => s.HasWork).ToList();
        var rows = new List<StepRow>();
        var owners = new List<Sequence>();
        foreach (var sequence in active)
        {
            foreach (var row in sequence.NextRows())
            {
                rows.Add(row);
                owners.Add(sequence);
            }
        }

        if (rows.Count == 0)
        {
            return [];
        }

        var results = Model.Step(rows, Cache, _attention);
        foreach (var sequence in active)
        {
            sequence.RowsRan();
        }

        var events = new List<(Sequence, TokenEvent)>();
        for (int i = 0; i < rows.Count; i++)
        {
            using var result = results[i];
            var sequence = owners[i];
            var row = rows[i];
            if (result.Next is { } next)
            {
                sequence.GoDeeper(next);
                continue;
            }

            if (result.FinalLogits is not { } logitsTensor)
            {
                continue;
            }

            using var logits32 = logitsTensor.to(torch.ScalarType.Float32, torch.CPU);
            var logits = logits32.data<float>().ToArray();
            if (sequence.Request.RecordPositions)
            {
                PositionCompleted?.Invoke(sequence, new PositionRecord(row.Position, sequence.Tokens[row.Position], row.Depth, result.ContinueProbability, logits));
            }

            if (sequence.IsLast(row.Position) && sequence.Finished is null)
            {
                events.Add((sequence, SampleNext(sequence, logits, row.Depth, result.ContinueProbability)));
            }
        }

        foreach (var sequence in active.Where(s => s.IsDone))
        {
            Remove(sequence);
        }

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

    private TokenEvent SampleNext(Sequence sequence, float[] logits, int depth, double? probability)
    {
        var sample = sequence.Sampler.Sample(logits);
        sequence.Sampler.Accept(sample.TokenId);
        sequence.Append(sample.TokenId);

        var request = sequence.Request;
        FinishReason? finish = null;
        if (!request.IgnoreEos && (Model.EosTokenIds.Contains(sample.TokenId) || request.StopTokenIds.Contains(sample.TokenId)))
        {
            finish = FinishReason.Stop;
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
        if (_running.Remove(sequence))
        {
            sequence.Dispose();
        }
    }

    public void Dispose()
    {
        foreach (var sequence in _running)
        {
            sequence.Dispose();
        }

        _running.Clear();
        Cache.Dispose();
    }
}
