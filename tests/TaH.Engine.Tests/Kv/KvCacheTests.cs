using TaH.Engine.Kv;
using TorchSharp;

namespace TaH.Engine.Tests.Kv;

/// <summary>The block pool's reference counts, and what happens to a block nobody holds.</summary>
public sealed class KvCacheTests : IDisposable
{
    private readonly KvCache _cache = new(layers: 1, kvHeads: 1, headDim: 2, blocks: 4, blockSize: 2, torch.ScalarType.Float32, torch.CPU, maxDepth: 2);

    public void Dispose() => _cache.Dispose();

    [Fact]
    public void ASharedBlockIsFreedByItsLastHolderAndCountedOnce()
    {
        int block = _cache.Allocate(1);
        _cache.Retain(block); // a second holder: a fork, or a prefix hit
        Assert.Equal(3, _cache.FreeBlocks);
        Assert.Equal(1, _cache.UsedBlocks(1));
        Assert.Equal(0, _cache.UsedBlocks(2));

        _cache.Release(block);
        Assert.True(_cache.IsHeld(block));
        Assert.Equal(3, _cache.FreeBlocks);

        _cache.Release(block);
        Assert.False(_cache.IsHeld(block));
        Assert.Equal(4, _cache.FreeBlocks);
        Assert.Equal(0, _cache.UsedBlocks(1));
        Assert.Equal(0, _cache.CachedBlocks); // the prefix cache never knew it: plainly free
    }

    [Fact]
    public void DepthsAreCountedApart()
    {
        int shallow = _cache.Allocate(1);
        int deep = _cache.Allocate(2);
        int deeper = _cache.Allocate(2);
        Assert.Equal(1, _cache.UsedBlocks(1));
        Assert.Equal(2, _cache.UsedBlocks(2));
        foreach (int b in new[] { shallow, deep, deeper })
        {
            _cache.Release(b);
        }

        Assert.Equal(0, _cache.UsedBlocks(1) + _cache.UsedBlocks(2));
    }

    [Fact]
    public void AReleasedBlockThePrefixCacheKnowsStaysCachedUntilRetakenOrEvicted()
    {
        int block = _cache.Allocate(1);
        var hash = BlockHash.Of(default, [1, 2]);
        _cache.Prefixes.RegisterDepth1(hash, block);
        _cache.Release(block);

        // Unheld but kept: it still counts as free, and a lookup finds it.
        Assert.Equal(1, _cache.CachedBlocks);
        Assert.Equal(4, _cache.FreeBlocks);
        Assert.Equal([block], _cache.Prefixes.Lookup([hash], null, 2).Depth1);

        // Taking it back (a prefix hit) makes it held, no longer evictable.
        _cache.Retain(block);
        Assert.Equal(0, _cache.CachedBlocks);
        Assert.Equal(3, _cache.FreeBlocks);
        Assert.Equal(1, _cache.UsedBlocks(1));
    }
}
