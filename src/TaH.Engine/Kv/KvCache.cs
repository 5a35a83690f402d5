using TaH.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Engine.Kv;

/// <summary>
/// The preallocated key/value pool: per layer, <c>[blocks * blockSize, kvHeads, headDim]</c> for
/// keys and for values. Blocks are handed out to sequences' per-depth tables and come back when a
/// sequence ends, so memory follows the number of entries that exist: every token at depth 1,
/// only the tokens that iterated at depth 2.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Stack<int> _free;
    private readonly LayerKv[] _layers;

    public KvCache(int layers, int kvHeads, int headDim, int blocks, int blockSize, ScalarType dtype, Device device)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blocks, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        BlockSize = blockSize;
        TotalBlocks = blocks;
        _layers = new LayerKv[layers];
        long slots = (long)blocks * blockSize;
        for (int i = 0; i < layers; i++)
        {
            // The pool lives as long as the cache, whatever dispose scope it was created in.
            _layers[i] = new LayerKv(
                zeros(slots, kvHeads, headDim, dtype: dtype, device: device).DetachFromDisposeScope(),
                zeros(slots, kvHeads, headDim, dtype: dtype, device: device).DetachFromDisposeScope());
        }

        BytesPerBlock = 2L * layers * blockSize * kvHeads * headDim * _layers[0].Keys.element_size();
        _free = new Stack<int>(Enumerable.Range(0, blocks).Reverse());
    }

    public int BlockSize { get; }

    public int TotalBlocks { get; }

    public int FreeBlocks => _free.Count;

    /// <summary>Bytes of keys and values, over all layers, one block holds.</summary>
    public long BytesPerBlock { get; }

    public LayerKv Layer(int index) => _layers[index];

    /// <summary>Blocks needed to hold <paramref name="entries"/> entries.</summary>
    public int BlocksFor(int entries) => (entries + BlockSize - 1) / BlockSize;

    internal bool TryAllocate(out int block) => _free.TryPop(out block);

    internal void Release(int block) => _free.Push(block);

    public void Dispose()
    {
        foreach (var layer in _layers)
        {
            layer.Keys.Dispose();
            layer.Values.Dispose();
        }
    }
}
