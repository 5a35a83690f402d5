using TaH.Kernels;
using TaH.Kernels.Cpu;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Engine.Kv;

/// <summary>
/// The preallocated key/value pool: per layer, <c>[blocks * blockSize, kvHeads, headDim]</c> for
/// keys and for values, handed out in blocks to sequences' per-depth tables. Blocks are reference
/// counted: full blocks may be shared (prefix caching, forks), a partly filled block never is, so
/// appending never writes where another sequence reads. A block no sequence holds any more stays
/// cached (if the prefix cache knows it) until the pool needs it, oldest first.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly LayerKv[] _layers;
    private readonly int[] _references;
    private readonly int[] _depthOf;
    private readonly long[] _generation;
    private readonly Stack<int> _free;
    private readonly LinkedList<int> _evictable = new();
    private readonly LinkedListNode<int>?[] _evictableNode;
    private readonly int[] _usedByDepth;

    public KvCache(int layers, int kvHeads, int headDim, int blocks, int blockSize, ScalarType dtype, Device device, int maxDepth = 2)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blocks, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        Budget = new KvBudget(blockSize, Math.Max(1, maxDepth), blocks);
        _layers = new LayerKv[layers];
        long slots = (long)blocks * blockSize;
        for (int i = 0; i < layers; i++)
        {
            // The pool lives as long as the cache, whatever dispose scope it was created in.
            _layers[i] = new LayerKv(Pool(slots, kvHeads, headDim, dtype, device), Pool(slots, kvHeads, headDim, dtype, device));
        }

        BytesPerBlock = 2L * layers * blockSize * kvHeads * headDim * _layers[0].Keys.element_size();
        _references = new int[blocks];
        _depthOf = new int[blocks];
        _generation = new long[blocks];
        _evictableNode = new LinkedListNode<int>?[blocks];
        _usedByDepth = new int[Math.Max(1, maxDepth)];
        _free = new Stack<int>(Enumerable.Range(0, blocks).Reverse());
        Prefixes = new PrefixCache(this);
    }

    /// <summary>
    /// One layer's keys or values, zeroed. On the CPU the pages are zero on demand: the pool holds
    /// memory as sequences write it, so an idle server is not charged for its worst case.
    /// </summary>
    private static unsafe Tensor Pool(long slots, int kvHeads, int headDim, ScalarType dtype, Device device)
    {
        if (device.type != DeviceType.CPU)
        {
            return zeros(slots, kvHeads, headDim, dtype: dtype, device: device).DetachFromDisposeScope();
        }

        var pool = empty(slots, kvHeads, headDim, dtype: dtype).DetachFromDisposeScope();
        WeightMemory.ZeroOnDemand(TensorMemory.Pointer<byte>(pool), pool.numel() * pool.element_size());
        return pool;
    }

    /// <summary>The pool's arithmetic: blocks per entries, per request, tokens that fit.</summary>
    public KvBudget Budget { get; }

    public int BlockSize => Budget.BlockSize;

    public int TotalBlocks => Budget.TotalBlocks;

    /// <summary>Blocks that can be handed out now: never used, or cached but held by no sequence.</summary>
    public int FreeBlocks => _free.Count + _evictable.Count;

    /// <summary>Blocks held by no sequence but kept for their cached contents.</summary>
    public int CachedBlocks => _evictable.Count;

    /// <summary>Bytes of keys and values, over all layers, one block holds.</summary>
    public long BytesPerBlock { get; }

    internal PrefixCache Prefixes { get; }

    public LayerKv Layer(int index) => _layers[index];

    /// <summary>Blocks held by sequences at <paramref name="depth"/> (shared blocks once).</summary>
    public int UsedBlocks(int depth) => depth <= _usedByDepth.Length ? _usedByDepth[depth - 1] : 0;

    /// <summary>A fresh block for a table of <paramref name="depth"/>; the caller made sure one is free.</summary>
    internal int Allocate(int depth)
    {
        int block;
        if (!_free.TryPop(out block))
        {
            var oldest = _evictable.First ?? throw new InvalidOperationException("the KV pool is exhausted; the scheduler must check FreeBlocks first");
            block = oldest.Value;
            _evictable.RemoveFirst();
            _evictableNode[block] = null;
            Prefixes.Forget(block);
        }

        _generation[block]++; // whatever pointed at its old contents is now stale
        _references[block] = 1;
        _depthOf[block] = depth;
        _usedByDepth[depth - 1]++;
        return block;
    }

    /// <summary>One more holder of a block (a sequence adopting a cached prefix, a fork).</summary>
    internal void Retain(int block)
    {
        if (_references[block]++ == 0)
        {
            if (_evictableNode[block] is { } node)
            {
                _evictable.Remove(node);
                _evictableNode[block] = null;
            }

            _usedByDepth[_depthOf[block] - 1]++;
        }
    }

    internal void Release(int block)
    {
        if (--_references[block] > 0)
        {
            return;
        }

        _usedByDepth[_depthOf[block] - 1]--;
        if (Prefixes.Knows(block))
        {
            _evictableNode[block] = _evictable.AddLast(block);
        }
        else
        {
            _free.Push(block);
        }
    }

    /// <summary>Identifies a block's current contents: it changes whenever the block is handed out again.</summary>
    internal long Generation(int block) => _generation[block];

    internal bool IsHeld(int block) => _references[block] > 0;

    /// <summary>Copies the first <paramref name="count"/> entries of a block into another, in every layer.</summary>
    internal void CopyEntries(int from, int to, int count)
    {
        if (count == 0)
        {
            return;
        }

        foreach (var layer in _layers)
        {
            foreach (var pool in new[] { layer.Keys, layer.Values })
            {
                using var source = pool.narrow(0, (long)from * BlockSize, count);
                using var target = pool.narrow(0, (long)to * BlockSize, count);
                target.copy_(source);
            }
        }
    }

    public void Dispose()
    {
        foreach (var layer in _layers)
        {
            layer.Keys.Dispose();
            layer.Values.Dispose();
        }
    }
}
