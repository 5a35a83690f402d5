using TaH.Engine.Constraints;
using TaH.Engine.Kv;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;

namespace TaH.Engine.Generation;

public enum SequenceStatus
{
    /// <summary>Queued: holds no KV blocks (new, or preempted and waiting to be recomputed).</summary>
    Waiting,

    Running,

    Finished,
}

/// <summary>
/// The engine's state for one sequence: its tokens, KV tables, sampler, and the work the next step
/// owes it: depth-1 rows for tokens not yet run (a prompt, in chunks, or the last sampled token)
/// and latent rows of positions going deeper.
/// </summary>
public sealed class Sequence : IDisposable
{
    private readonly List<int> _tokens;
    private readonly List<LatentState> _latents = [];
    private readonly List<BlockHash> _blockHashes = [];
    private readonly KvCache _cache;
    private int _registeredDepth1;
    private int _registeredDeep;
    private int _scheduledTokens;
    private int _scheduledLatents;

    internal Sequence(int id, GenerationRequest request, KvCache cache, int maxDepth, Sampler sampler, string? policyKey, ConstraintMatcher? matcher)
    {
        Id = id;
        Request = request;
        _cache = cache;
        Kv = new SequenceKv(cache, maxDepth);
        Sampler = sampler;
        PolicyKey = policyKey;
        Matcher = matcher;
        _tokens = [.. request.PromptTokens];
    }

    public int Id { get; }

    public GenerationRequest Request { get; }

    public IReadOnlyList<int> Tokens => _tokens;

    public int PromptLength => Request.PromptTokens.Count;

    public int GeneratedCount => _tokens.Count - PromptLength;

    public SequenceStatus Status { get; internal set; } = SequenceStatus.Waiting;

    public FinishReason? Finished { get; private set; }

    /// <summary>Prompt tokens this sequence took from the prefix cache instead of computing.</summary>
    public int CachedPromptTokens { get; private set; }

    /// <summary>Times it was preempted (its blocks freed, to be recomputed).</summary>
    public int Preemptions { get; private set; }

    /// <summary>Finished, and nothing left to run.</summary>
    public bool IsDone => Finished is not null && !HasWork;

    internal SequenceKv Kv { get; private set; }

    internal Sampler Sampler { get; }

    /// <summary>Where the output stands in the request's constraint (null without one).</summary>
    internal ConstraintMatcher? Matcher { get; }

    /// <summary>
    /// The mask to sample the next token with, or null. Computed when sampling (in parallel over
    /// the step's sequences), not during the forward: a few microseconds against the forward's
    /// milliseconds, and a worker running beside the forward took cores from libtorch's threads.
    /// </summary>
    internal TokenMask? Mask() => Matcher?.ComputeMask();

    /// <summary>Which deeper entries this sequence's policy produces (null when it never iterates).</summary>
    internal string? PolicyKey { get; }

    /// <summary>Positions whose depth-1 row has run.</summary>
    internal int Computed { get; private set; }

    /// <summary>
    /// Whether the next step owes this sequence rows. After it finished, only the latent rows an
    /// inspection still wants recorded.
    /// </summary>
    internal bool HasWork => _latents.Count > 0 || (Finished is null && Computed < _tokens.Count);

    internal int PendingTokens => Finished is null ? _tokens.Count - Computed : 0;

    internal int PendingLatents => _latents.Count;

    /// <summary>
    /// Takes the prefix cache's longest match for this sequence's prompt, leaving at least the
    /// last prompt token to compute (its logits give the first output token).
    /// </summary>
    internal void AdoptCachedPrefix(int[] depth1, DeepPrefix[] deeper)
    {
        int length = depth1.Length * _cache.BlockSize;
        Kv.Adopt(depth1, deeper, length);
        Computed = length;
        CachedPromptTokens = Math.Max(CachedPromptTokens, length);
        _registeredDepth1 = _registeredDeep = depth1.Length;
    }

    /// <summary>Hashes of the full blocks of the first <paramref name="tokens"/> tokens.</summary>
    internal IReadOnlyList<BlockHash> BlockHashes(int tokens)
    {
        int blocks = tokens / _cache.BlockSize;
        while (_blockHashes.Count < blocks)
        {
            int b = _blockHashes.Count;
            var parent = b == 0 ? default : _blockHashes[b - 1];
            _blockHashes.Add(BlockHash.Of(parent, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_tokens).Slice(b * _cache.BlockSize, _cache.BlockSize)));
        }

        return _blockHashes.Count == blocks ? _blockHashes : _blockHashes.GetRange(0, blocks);
    }

    /// <summary>KV blocks the next step's rows would take: latent rows, then up to <paramref name="tokens"/> token rows.</summary>
    internal int BlocksNeeded(int tokens)
    {
        int needed = tokens > 0 ? Kv.BlocksNeeded(1, tokens) : 0;
        foreach (var group in _latents.GroupBy(l => l.Depth))
        {
            needed += Kv.BlocksNeeded(group.Key, group.Count());
        }

        return needed;
    }

    /// <summary>
    /// The rows for the next step: every latent row, then <paramref name="tokens"/> token rows;
    /// their KV entries are appended now (the scheduler made room).
    /// </summary>
    internal IEnumerable<StepRow> ScheduleRows(int tokens)
    {
        _scheduledLatents = _latents.Count;
        _scheduledTokens = tokens;
        var policy = Request.Policy;
        var rows = new List<StepRow>(_latents.Count + tokens);
        foreach (var latent in _latents)
        {
            rows.Add(StepRow.ForLatent(Kv, latent, policy, WantsLogits(latent.Position), Kv.Append(latent.Position, latent.Depth)));
        }

        for (int p = Computed; p < Computed + tokens; p++)
        {
            rows.Add(StepRow.ForToken(Kv, p, _tokens[p], policy, WantsLogits(p), Kv.Append(p, 1)));
        }

        return rows;
    }

    /// <summary>The scheduled rows ran: their latents are consumed, their positions computed.</summary>
    internal void RowsRan()
    {
        foreach (var latent in _latents.Take(_scheduledLatents))
        {
            latent.Dispose();
        }

        _latents.RemoveRange(0, _scheduledLatents);
        Computed += _scheduledTokens;
        _scheduledLatents = _scheduledTokens = 0;
    }

    internal void GoDeeper(LatentState next) => _latents.Add(next);

    /// <summary>
    /// Offers the prefix cache every block whose contents are now final: full depth-1 blocks, and
    /// for the prefix they end, the deeper entries once no position in it is still iterating.
    /// </summary>
    internal void RegisterPrefix()
    {
        int fullBlocks = Computed / _cache.BlockSize;
        var hashes = BlockHashes(Math.Min(fullBlocks * _cache.BlockSize, _tokens.Count));
        var depth1 = Kv.Blocks(1);
        for (; _registeredDepth1 < hashes.Count; _registeredDepth1++)
        {
            _cache.Prefixes.RegisterDepth1(hashes[_registeredDepth1], depth1[_registeredDepth1]);
        }

        if (PolicyKey is null || Kv.MaxDepth < 2)
        {
            return;
        }

        // Positions before the first one still iterating have all their entries.
        int settled = _latents.Count > 0 ? Math.Min(_latents.Min(l => l.Position), Computed) : Computed;
        int settledBlocks = Math.Min(settled / _cache.BlockSize, hashes.Count);
        for (; _registeredDeep < settledBlocks; _registeredDeep++)
        {
            int end = (_registeredDeep + 1) * _cache.BlockSize;
            for (int depth = 2; depth <= Kv.MaxDepth; depth++)
            {
                var positions = Kv.Positions(depth);
                int count = CountBelow(positions, end);
                _cache.Prefixes.RegisterDeep(hashes[_registeredDeep], PolicyKey, depth, count, Kv.Blocks(depth), positions);
            }
        }
    }

    internal bool IsLast(int position) => position == _tokens.Count - 1;

    internal void Append(int token) => _tokens.Add(token);

    internal void Finish(FinishReason reason)
    {
        Finished ??= reason;
        Status = SequenceStatus.Finished;
        if (!Request.RecordPositions || reason == FinishReason.Cancelled)
        {
            DropLatents();
        }
    }

    /// <summary>Frees every block and forgets the work in flight; the tokens and sampler stay, so
    /// recomputing the prefix later continues exactly where it stopped.</summary>
    internal void Preempt()
    {
        DropLatents();
        Kv.Dispose();
        Kv = new SequenceKv(_cache, Kv.MaxDepth);
        Computed = 0;
        _registeredDepth1 = _registeredDeep = 0;
        Status = SequenceStatus.Waiting;
        Preemptions++;
    }

    /// <summary>A parallel sample of this sequence (n &gt; 1) that shares its blocks.</summary>
    internal Sequence Fork(int id, Sampler sampler)
    {
        var fork = new Sequence(id, Request, _cache, Kv.MaxDepth, sampler, PolicyKey, Matcher?.Clone())
        {
            Status = Status,
            Computed = Computed,
            CachedPromptTokens = CachedPromptTokens,
        };
        fork.Kv.Dispose();
        fork.Kv = Kv.Fork();
        fork._tokens.Clear();
        fork._tokens.AddRange(_tokens);
        fork._latents.AddRange(_latents.Select(l => l.Clone()));
        fork._registeredDepth1 = _registeredDepth1;
        fork._registeredDeep = _registeredDeep;
        return fork;
    }

    private static int CountBelow(IReadOnlyList<int> ascending, int end)
    {
        int lo = 0, hi = ascending.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (ascending[mid] < end)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }

    private bool WantsLogits(int position) => Request.RecordPositions || IsLast(position);

    private void DropLatents()
    {
        foreach (var latent in _latents)
        {
            latent.Dispose();
        }

        _latents.Clear();
    }

    public void Dispose()
    {
        DropLatents();
        Kv.Dispose();
    }
}
