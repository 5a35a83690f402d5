namespace TaH.Kernels;

/// <summary>
/// The keys and values one sequence has cached at one depth, in a paged pool. Entry i lives in
/// slot <c>Blocks[i / blockSize] * blockSize + i % blockSize</c> and belongs to position
/// <c>Positions[i]</c>. Depth 1 has an entry for every position; deeper levels only for the
/// positions that iterated, so their positions are sparse (but ascending).
/// </summary>
public readonly record struct KvEntries(int[] Blocks, int[] Positions, int Count);

/// <summary>One sequence's cache as the attention sees it: <c>Depths[d - 1]</c> holds depth d.</summary>
public sealed record AttentionSequence(IReadOnlyList<KvEntries> Depths);

/// <summary>
/// What one forward step asks of attention: rows (queries) of possibly different sequences,
/// positions and depths, and where each row's own key and value go. Built once per step and
/// shared by every layer. A row at (p, d) sees the entries (p', d') of its own sequence with
/// p' &lt;= p and d' &lt;= d (the duo-causal rule), its own entry included.
/// </summary>
public sealed class AttentionBatch
{
    public AttentionBatch(
        int blockSize,
        IReadOnlyList<AttentionSequence> sequences,
        int[] rowSequence,
        int[] rowPosition,
        int[] rowDepth,
        long[] rowSlot)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        int rows = rowSequence.Length;
        if (rowPosition.Length != rows || rowDepth.Length != rows || rowSlot.Length != rows)
        {
            throw new ArgumentException("row arrays must have the same length");
        }

        BlockSize = blockSize;
        Sequences = sequences;
        RowSequence = rowSequence;
        RowPosition = rowPosition;
        RowDepth = rowDepth;
        RowSlot = rowSlot;
    }

    public int BlockSize { get; }

    public IReadOnlyList<AttentionSequence> Sequences { get; }

    /// <summary>Per row, the index of its sequence in <see cref="Sequences"/>.</summary>
    public int[] RowSequence { get; }

    public int[] RowPosition { get; }

    /// <summary>Per row, its depth (1 = the plain pass, 2 = the first latent iteration, ...).</summary>
    public int[] RowDepth { get; }

    /// <summary>Per row, the pool slot that receives its key and value.</summary>
    public long[] RowSlot { get; }

    public int RowCount => RowSequence.Length;

    public long SlotOf(in KvEntries entries, int index) =>
        ((long)entries.Blocks[index / BlockSize] * BlockSize) + (index % BlockSize);
}
