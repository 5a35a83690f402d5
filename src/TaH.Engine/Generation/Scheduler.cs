using TaH.Engine.Kv;
using TaH.Engine.TaH;

namespace TaH.Engine.Generation;

/// <summary>What one step runs: rows, the sequence of each row, and the sequences scheduled.</summary>
internal sealed class StepPlan
{
    public List<StepRow> Rows { get; } = [];

    public List<Sequence> Owners { get; } = [];

    public List<Sequence> Sequences { get; } = [];

    public void Add(Sequence sequence, IEnumerable<StepRow> rows)
    {
        Sequences.Add(sequence);
        foreach (var row in rows)
        {
            Rows.Add(row);
            Owners.Add(sequence);
        }
    }
}

/// <summary>
/// Continuous batching over the paged cache, as vLLM and SGLang do it. Each step: running
/// sequences first, oldest first (their latent rows and their next token, or the next chunk of
/// their prompt within the row budget), then waiting ones in arrival order while rows and blocks
/// last. A prompt is cut into chunks so it never stalls running decodes. When blocks run out, the
/// newest running sequence is preempted: its blocks are freed and it goes back to the front of
/// the queue, to be recomputed (from cached blocks where they survive).
/// </summary>
internal sealed class Scheduler(KvCache cache, EngineOptions options)
{
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = [];

    public int WaitingCount => _waiting.Count;

    public int RunningCount => _running.Count;

    public long Preemptions { get; private set; }

    public long CachedPromptTokens { get; private set; }

    public void Enqueue(Sequence sequence) => _waiting.AddLast(sequence);

    /// <summary>Adds a forked sequence next to its parent, already running.</summary>
    public void AddRunning(Sequence sequence) => _running.Add(sequence);

    public void Remove(Sequence sequence)
    {
        if (!_running.Remove(sequence))
        {
            _waiting.Remove(sequence);
        }
    }

    public StepPlan Schedule()
    {
        var plan = new StepPlan();
        int budget = options.MaxBatchTokens;
        bool preempted = false;

        for (int i = 0; i < _running.Count; i++)
        {
            var sequence = _running[i];
            if (!sequence.HasWork)
            {
                continue;
            }

            int tokens = Math.Min(sequence.PendingTokens, Math.Max(0, budget - sequence.PendingLatents));
            if (tokens == 0 && sequence.PendingLatents == 0)
            {
                continue; // a prompt chunk that must wait for budget
            }

            int needed = sequence.BlocksNeeded(tokens);
            while (needed > cache.FreeBlocks && NewestAfter(i) is { } victim)
            {
                Preempt(victim);
                preempted = true;
            }

            if (needed > cache.FreeBlocks)
            {
                // It does not fit even with everything newer gone: it steps back until blocks free up.
                Preempt(sequence);
                preempted = true;
                i--;
                continue;
            }

            var rows = sequence.ScheduleRows(tokens).ToList();
            plan.Add(sequence, rows);
            budget -= rows.Count;
        }

        // New work only when nothing had to give way this step; strictly in arrival order.
        while (!preempted && budget > 0 && _running.Count < options.MaxRunning && _waiting.First is { } node)
        {
            var sequence = node.Value;
            var (depth1, deeper) = options.PrefixCaching ? Lookup(sequence) : ([], []);
            int adopted = depth1.Length * cache.BlockSize;
            int tokens = Math.Min(sequence.Tokens.Count - adopted, budget);
            int needed = cache.Budget.BlocksToAdmit(depth1, deeper, adopted + tokens, cache.IsHeld);
            if (needed > cache.FreeBlocks)
            {
                break;
            }

            _waiting.RemoveFirst();
            if (depth1.Length > 0)
            {
                sequence.AdoptCachedPrefix(depth1, deeper);
                CachedPromptTokens += adopted;
            }

            sequence.Status = SequenceStatus.Running;
            _running.Add(sequence);
            plan.Add(sequence, sequence.ScheduleRows(tokens));
            budget -= tokens;
        }

        return plan;
    }

    /// <summary>The cached prefix to reuse: whole blocks, never the last token (its logits are needed).</summary>
    private (int[] Depth1, DeepPrefix[] Deeper) Lookup(Sequence sequence)
    {
        if (sequence.Computed > 0)
        {
            return ([], []);
        }

        var hashes = sequence.BlockHashes(sequence.Tokens.Count - 1);
        return cache.Prefixes.Lookup(hashes, sequence.PolicyKey, sequence.Kv.MaxDepth);
    }

    /// <summary>The newest running sequence after index <paramref name="i"/> that can be recomputed later.</summary>
    private Sequence? NewestAfter(int i)
    {
        for (int j = _running.Count - 1; j > i; j--)
        {
            if (_running[j].Finished is null)
            {
                return _running[j];
            }
        }

        return null;
    }

    private void Preempt(Sequence sequence)
    {
        _running.Remove(sequence);
        sequence.Preempt();
        _waiting.AddFirst(sequence);
        Preemptions++;
    }
}
