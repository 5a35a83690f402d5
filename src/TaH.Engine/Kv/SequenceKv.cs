using TaH.Kernels;

namespace TaH.Engine.Kv;

/// <summary>
/// One sequence's block tables, one per depth. Depth 1 holds an entry for each position in order;
/// deeper levels hold entries only for the positions that iterated there. Full blocks may be
/// shared with other sequences; the part-filled last block of each table is always this
/// sequence's own.
/// </summary>
public sealed class SequenceKv : IDisposable
{
    private readonly KvCache _cache;
    private readonly DepthTable[] _depths;

    public SequenceKv(KvCache cache, int maxDepth)
    {
        _cache = cache;
        _depths = [.. Enumerable.Range(0, maxDepth).Select(_ => new DepthTable())];
    }

    public int MaxDepth => _depths.Length;

    /// <summary>Entries stored at <paramref name="depth"/>.</summary>
    public int Count(int depth) => _depths[depth - 1].Count;

    public IReadOnlyList<int> Blocks(int depth) => _depths[depth - 1].Blocks;

    public IReadOnlyList<int> Positions(int depth) => _depths[depth - 1].Positions;

    /// <summary>New blocks that <paramref name="entries"/> more entries at <paramref name="depth"/> would take.</summary>
    public int BlocksNeeded(int depth, int entries)
    {
        var table = _depths[depth - 1];
        return _cache.Budget.BlocksFor(table.Count + entries) - table.Blocks.Count;
    }

    /// <summary>
    /// Adds the entry of <paramref name="position"/> at <paramref name="depth"/> and returns its pool
    /// slot; the caller made sure a block is free when one is needed.
    /// </summary>
    public long Append(int position, int depth)
    {
        var table = _depths[depth - 1];
        if (table.Count > 0 && position <= table.Positions[^1])
        {
            throw new InvalidOperationException($"depth-{depth} entries must be appended in position order ({position} after {table.Positions[^1]})");
        }

        int blockSize = _cache.BlockSize;
        if (table.Count == table.Blocks.Count * blockSize)
        {
            table.Blocks.Add(_cache.Allocate(depth));
        }

        int index = table.Count;
        table.Positions.Add(position);
        return ((long)table.Blocks[index / blockSize] * blockSize) + (index % blockSize);
    }

    /// <summary>
    /// Starts this (empty) sequence from a cached prefix: shares its full blocks and copies the
    /// part-filled deeper block, so appending later never touches another sequence's entries.
    /// Needs one free block per deeper depth whose entries end part-way through a block.
    /// </summary>
    internal void Adopt(int[] depth1Blocks, DeepPrefix[] deeper, int length)
    {
        var first = _depths[0];
        foreach (int block in depth1Blocks)
        {
            _cache.Retain(block);
            first.Blocks.Add(block);
        }

        first.Positions.AddRange(Enumerable.Range(0, length));
        foreach (var deep in deeper)
        {
            var table = _depths[deep.Depth - 1];
            int full = deep.Count / _cache.BlockSize, rest = deep.Count % _cache.BlockSize;
            for (int i = 0; i < full; i++)
            {
                _cache.Retain(deep.Blocks[i]);
                table.Blocks.Add(deep.Blocks[i]);
            }

            if (rest > 0)
            {
                int own = _cache.Allocate(deep.Depth);
                _cache.CopyEntries(deep.Blocks[full], own, rest);
                table.Blocks.Add(own);
            }

            table.Positions.AddRange(deep.Positions);
        }
    }

    /// <summary>A copy for a parallel sample (n &gt; 1): full blocks shared, part-filled ones copied.</summary>
    public SequenceKv Fork()
    {
        var fork = new SequenceKv(_cache, MaxDepth);
        for (int d = 0; d < _depths.Length; d++)
        {
            var source = _depths[d];
            var target = fork._depths[d];
            int full = source.Count / _cache.BlockSize;
            for (int i = 0; i < full; i++)
            {
                _cache.Retain(source.Blocks[i]);
                target.Blocks.Add(source.Blocks[i]);
            }

            if (source.Blocks.Count > full)
            {
                int own = _cache.Allocate(d + 1);
                _cache.CopyEntries(source.Blocks[full], own, source.Count - (full * _cache.BlockSize));
                target.Blocks.Add(own);
            }

            target.Positions.AddRange(source.Positions);
        }

        return fork;
    }

    /// <summary>Blocks a <see cref="Fork"/> takes from the pool.</summary>
    public int BlocksToFork() => _depths.Count(t => t.Count % _cache.BlockSize != 0);

    /// <summary>A snapshot of the tables for one step's attention.</summary>
    public AttentionSequence ToAttention() =>
        new([.. _depths.Select(t => new KvEntries([.. t.Blocks], [.. t.Positions], t.Count))]);

    /// <summary>Returns every block to the pool (shared ones stay with their other holders).</summary>
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
