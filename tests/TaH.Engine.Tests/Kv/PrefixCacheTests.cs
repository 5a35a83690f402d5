using TaH.Engine.Kv;
using TorchSharp;

namespace TaH.Engine.Tests.Kv;

/// <summary>The prefix cache over the pool: oldest-first eviction, and entries that go stale when their blocks are handed out again.</summary>
public sealed class PrefixCacheTests : IDisposable
{
    private readonly KvCache _cache = new(layers: 1, kvHeads: 1, headDim: 2, blocks: 4, blockSize: 2, torch.ScalarType.Float32, torch.CPU, maxDepth: 2);

    public void Dispose() => _cache.Dispose();

    private static BlockHash[] Chain(params int[][] blocks)
    {
        var hashes = new BlockHash[blocks.Length];
        for (int i = 0; i < blocks.Length; i++)
        {
            hashes[i] = BlockHash.Of(i == 0 ? default : hashes[i - 1], blocks[i]);
        }

        return hashes;
    }

    /// <summary>A block registered for <paramref name="hash"/> and then released by its sequence.</summary>
    private int Cached(BlockHash hash)
    {
        int block = _cache.Allocate(1);
        _cache.Prefixes.RegisterDepth1(hash, block);
        _cache.Release(block);
        return block;
    }

    [Fact]
    public void TheOldestUnheldBlockIsEvictedFirstAndItsEntryForgotten()
    {
        var first = Chain([1, 2]);
        var second = Chain([3, 4]);
        int older = Cached(first[0]);
        int newer = Cached(second[0]);
        Assert.Equal(2, _cache.CachedBlocks);

        // Two never-used blocks go first, then the oldest cached one.
        var taken = Enumerable.Range(0, 3).Select(_ => _cache.Allocate(1)).ToList();
        Assert.Contains(older, taken);
        Assert.DoesNotContain(newer, taken);
        Assert.Empty(_cache.Prefixes.Lookup(first, null, 2).Depth1);
        Assert.Equal([newer], _cache.Prefixes.Lookup(second, null, 2).Depth1);
        Assert.False(_cache.Prefixes.Knows(older));
    }

    [Fact]
    public void ALookupStopsAtTheFirstMissingBlockOfTheChain()
    {
        var hashes = Chain([1, 2], [3, 4], [5, 6]);
        int a = Cached(hashes[0]);
        int b = Cached(hashes[1]);
        Assert.Equal([a, b], _cache.Prefixes.Lookup(hashes, null, 2).Depth1);

        // Another prompt that shares only the first block finds only that one.
        var other = Chain([1, 2], [9, 9]);
        Assert.Equal([a], _cache.Prefixes.Lookup(other, null, 2).Depth1);
    }

    [Fact]
    public void DeeperEntriesAreForTheirPolicyAndGoStaleWithAnyOfTheirBlocks()
    {
        var hashes = Chain([1, 2], [3, 4]);
        int d1a = _cache.Allocate(1), d1b = _cache.Allocate(1), d2 = _cache.Allocate(2);
        _cache.Prefixes.RegisterDepth1(hashes[0], d1a);
        _cache.Prefixes.RegisterDepth1(hashes[1], d1b);

        // Positions 1 and 3 iterated: the depth-2 entries of the 4-token prefix, one block.
        _cache.Prefixes.RegisterDeep(hashes[1], "always", 2, 2, [d2], [1, 3]);
        var (depth1, deeper) = _cache.Prefixes.Lookup(hashes, "always", 2);
        Assert.Equal([d1a, d1b], depth1);
        Assert.Equal([1, 3], Assert.Single(deeper).Positions);

        // Another policy iterates other positions: no deeper entries, so no hit at all.
        Assert.Empty(_cache.Prefixes.Lookup(hashes, "decider:0.5", 2).Depth1);

        // The depth-2 block, released first, is the first evicted and handed out again: the
        // iterating policy loses its hit; the depth-1 blocks, untouched, still serve one that never iterates.
        foreach (int b in new[] { d2, d1a, d1b })
        {
            _cache.Release(b);
        }

        var again = Enumerable.Range(0, 2).Select(_ => _cache.Allocate(2)).ToList(); // the never-used block, then the oldest cached
        Assert.Contains(d2, again);
        Assert.Empty(_cache.Prefixes.Lookup(hashes, "always", 2).Depth1);
        Assert.Equal([d1a, d1b], _cache.Prefixes.Lookup(hashes, null, 2).Depth1);
    }
}
