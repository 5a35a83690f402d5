using TaH.Kernels;

namespace TaH.Engine.Kv;

/// <summary>
/// One sequence's block tables, one per depth. Depth 1 holds an entry for each position in order;
/// deeper levels hold entries only for the positions that iterated there.
/// </summary>
public sealed class SequenceKv : IDisposable
{
    private readonly KvCache _cache;
    private readonly DepthTable[] _depths;

    public SequenceKv(KvCache cache, int maxDepth)
    {
        _cache = cache;
        _depths = new DepthTable[maxDepth];
        for (int d = 0; d < maxDepth; d++)
        {
            _depths[d] = new DepthTable();
        }
    }

    public int MaxDepth => _depths.Length;

    /// <summary>Entries stored at <paramref name="depth"/>.</summary>
    public int Count(int depth) => _depths[depth - 1].Count;

    public int BlockCount(int depth) => _depths[depth - 1].Blocks.Count;

    public long BytesPerBlock => _cache.BytesPerBlock;

    /// <summary>
    /// Adds the entry of <paramref name="position"/> at <paramref name="depth"/> and returns its pool
    /// slot, or null when the pool is out of blocks (nothing is changed then).
    /// </summary>
    public long? TryAppend(int position, int depth)
    {
        var table = _depths[depth - 1];
        if (table.Count > 0 && position <= table.Positions[table.Count - 1])
        {
            throw new InvalidOperationException($"depth-{depth} entries must be appended in position order ({position} after {table.Positions[table.Count - 1]})");
        }

        int blockSize = _cache.BlockSize;
        if (table.Count == table.Blocks.Count * blockSize)
        {
            if (!_cache.TryAllocate(out int block))
            {
                return null;
            }

            table.Blocks.Add(block);
        }

        int index = table.Count;
        table.Positions.Add(position);
        return ((long)table.Blocks[index / blockSize] * blockSize) + (index % blockSize);
    }

    /// <summary>A snapshot of the tables for one step's attention.</summary>
    public AttentionSequence ToAttention() =>
        new([.. _depths.Select(t => new KvEntries([.. t.Blocks], [.. t.Positions], t.Count))]);

    /// <summary>Returns every block to the pool.</summary>
    public void Dispose()
    {
        foreach (var table in _depths)
        {
            foreach (int block in table.Blocks)
            {
                _cache.Release(block);
            }

            table.Blocks.Clear();
            table.Positions.Clear();
        }
    }

    private sealed class DepthTable
    {
        public List<int> Blocks { get; } = [];

        public List<int> Positions { get; } = [];

        public int Count => Positions.Count;
    }
}
