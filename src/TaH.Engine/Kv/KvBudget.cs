using TaH.Engine.Generation;

namespace TaH.Engine.Kv;

/// <summary>
/// The KV pool's arithmetic, in one place: how many blocks entries take, how many a request may
/// need at worst, how many output tokens or samples fit, and what admitting a sequence takes.
/// Immutable; the pool's state (which blocks are free or held) is passed in where it matters.
/// </summary>
/// <param name="BlockSize">Entries per block.</param>
/// <param name="MaxDepth">Depths a position may reach; each depth has its own tables.</param>
/// <param name="TotalBlocks">Blocks in the pool.</param>
public sealed record KvBudget(int BlockSize, int MaxDepth, int TotalBlocks)
{
    /// <summary>Blocks needed to hold <paramref name="entries"/> entries of one table.</summary>
    public int BlocksFor(int entries) => (entries + BlockSize - 1) / BlockSize;

    /// <summary>
    /// Enough blocks for one request at every depth, whatever its positions decide: the prompt
    /// once (its samples share it) and, per sample, its output and a copied part-filled block.
    /// </summary>
    public int BlocksForRequest(int promptTokens, int maxTokens, int samples) =>
        MaxDepth * (BlocksFor(promptTokens) + (Math.Max(1, samples) * (BlocksFor(maxTokens) + 2)));

    /// <summary>Whether a request that large can ever run in this pool, alone.</summary>
    public bool Fits(int promptTokens, int maxTokens, int samples) => BlocksForRequest(promptTokens, maxTokens, samples) <= TotalBlocks;

    /// <summary>The most output tokens a request may ask for and still fit the pool alone (the inverse of <see cref="BlocksForRequest"/>).</summary>
    public int MaxTokensFitting(int promptTokens, int samples)
    {
        int perSample = (((TotalBlocks / MaxDepth) - BlocksFor(promptTokens)) / Math.Max(1, samples)) - 2;
        return Math.Max(0, perSample * BlockSize);
    }

    /// <summary>The most samples of a prompt that fit the pool alone with at least one output token each.</summary>
    public int MaxSamplesFitting(int promptTokens) =>
        Math.Max(0, ((TotalBlocks / MaxDepth) - BlocksFor(promptTokens)) / (BlocksFor(1) + 2));

    /// <summary>The blocks a pool needs to run <paramref name="request"/> alone (inspection, tests).</summary>
    public static int PoolFor(GenerationRequest request, int maxDepth, int blockSize = 16) =>
        new KvBudget(blockSize, Math.Max(1, maxDepth), 0).BlocksForRequest(request.PromptTokens.Count, request.MaxTokens, request.N);

    /// <summary>
    /// Free blocks a waiting sequence takes to start: the cached blocks of its prefix hit that no
    /// sequence holds now (they leave the evictable list), a copy of each part-filled deeper block
    /// of the hit, and fresh blocks for the depth-1 entries past the hit up to
    /// <paramref name="entries"/>.
    /// </summary>
    internal int BlocksToAdmit(int[] depth1Hit, DeepPrefix[] deeperHit, int entries, Func<int, bool> isHeld) =>
        depth1Hit.Count(b => !isHeld(b))
        + deeperHit.Sum(d => d.Blocks.Take(d.Count / BlockSize).Count(b => !isHeld(b)))
        + deeperHit.Count(d => d.Count % BlockSize != 0)
        + BlocksFor(entries) - depth1Hit.Length;
}
