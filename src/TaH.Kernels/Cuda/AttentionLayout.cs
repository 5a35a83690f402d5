namespace TaH.Kernels.Cuda;

/// <summary>
/// A step's attention metadata in the form the CUDA kernels read, built once per step on the host
/// and uploaded in one copy. Rows of sequences with few rows in the step (decode) become one work
/// item each for the split-K decode kernel; sequences with many rows (prefill chunks) are cut into
/// tiles of up to 64 rows for the tensor-core kernel. A row's visible entries at depth d' are the
/// prefix of that depth's table up to its position (tables are ascending), for d' &lt;= its depth.
/// </summary>
public sealed class AttentionLayout
{
    /// <summary>Depths the kernels are compiled for (TAH_MAX_DEPTH).</summary>
    public const int MaxDepth = 4;

    public const int DecodeMetaStride = 1 + (2 * MaxDepth);

    public const int TileMetaStride = 2 + (3 * MaxDepth);

    /// <summary>Rows per prefill tile of the default kernel blocking (<see cref="PrefillVariant.Default"/>).</summary>
    public const int DefaultTileRows = 128;

    /// <summary>A sequence with more rows than this in a step takes the prefill kernel.</summary>
    public const int DecodeRowLimit = 8;

    public AttentionLayout(AttentionBatch batch, int rowsPerTile = DefaultTileRows)
    {
        TileRows = rowsPerTile;
        var sequences = batch.Sequences;
        var blockTables = new List<int>();
        var entryPositions = new List<int>();
        var blockOffset = new int[sequences.Count, MaxDepth];
        var positionOffset = new int[sequences.Count, MaxDepth];
        for (int s = 0; s < sequences.Count; s++)
        {
            if (sequences[s].Depths.Count > MaxDepth)
            {
                throw new ArgumentException($"the CUDA attention supports up to {MaxDepth} depths (sequence {s} has {sequences[s].Depths.Count})", nameof(batch));
            }

            for (int d = 0; d < sequences[s].Depths.Count; d++)
            {
                var table = sequences[s].Depths[d];
                blockOffset[s, d] = blockTables.Count;
                positionOffset[s, d] = entryPositions.Count;
                blockTables.AddRange(table.Blocks.Take((table.Count + batch.BlockSize - 1) / batch.BlockSize));
                entryPositions.AddRange(table.Positions.Take(table.Count));
            }
        }

        var rowsOf = new List<int>[sequences.Count];
        for (int row = 0; row < batch.RowCount; row++)
        {
            (rowsOf[batch.RowSequence[row]] ??= []).Add(row);
        }

        // Entries of (s, d) visible from a row: how many of that table's positions are <= the row's.
        int Visible(int row, int d)
        {
            int s = batch.RowSequence[row];
            if (d + 1 > batch.RowDepth[row] || d >= sequences[s].Depths.Count)
            {
                return 0;
            }

            var table = sequences[s].Depths[d];
            int lo = 0, hi = table.Count, position = batch.RowPosition[row];
            while (lo < hi)
            {
                int mid = (lo + hi) >> 1;
                if (table.Positions[mid] <= position)
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

        var decode = new List<int>();
        var tiles = new List<(long Work, int[] Meta, int[] Rows)>();
        for (int s = 0; s < sequences.Count; s++)
        {
            var rows = rowsOf[s];
            if (rows is null)
            {
                continue;
            }

            if (rows.Count <= DecodeRowLimit)
            {
                foreach (int row in rows)
                {
                    decode.Add(row);
                    int total = 0;
                    for (int d = 0; d < MaxDepth; d++)
                    {
                        int n = Visible(row, d);
                        decode.Add(blockOffset[s, d]);
                        decode.Add(n);
                        total += n;
                    }

                    MaxDecodeEntries = Math.Max(MaxDecodeEntries, total);
                    DecodeEntries += total;
                }

                continue;
            }

            // Rows in position order, so each tile's keys end near its last position.
            var ordered = rows.OrderBy(r => batch.RowPosition[r]).ThenBy(r => batch.RowDepth[r]).ToArray();
            for (int first = 0; first < ordered.Length; first += rowsPerTile)
            {
                var chunk = ordered.AsSpan(first, Math.Min(rowsPerTile, ordered.Length - first));
                var meta = new int[TileMetaStride];
                meta[1] = chunk.Length;
                long work = 0;
                for (int d = 0; d < MaxDepth; d++)
                {
                    int n = 0;
                    foreach (int row in chunk)
                    {
                        n = Math.Max(n, Visible(row, d));
                    }

                    meta[2 + (3 * d)] = blockOffset[s, d];
                    meta[3 + (3 * d)] = positionOffset[s, d];
                    meta[4 + (3 * d)] = n;
                    work += n;
                }

                tiles.Add((work, meta, chunk.ToArray()));
            }
        }

        // Heaviest tiles first: they start in the first wave instead of trailing at the end.
        var tileMeta = new List<int>();
        var tileRows = new List<int>();
        foreach (var (_, meta, chunkRows) in tiles.OrderByDescending(t => t.Work))
        {
            meta[0] = tileRows.Count;
            tileMeta.AddRange(meta);
            tileRows.AddRange(chunkRows);
        }

        DecodeItems = decode.Count / DecodeMetaStride;
        TileCount = tiles.Count;
        RowCount = batch.RowCount;

        // One int32 buffer: [decode meta | tile meta | tile rows | row pos | row depth | block tables | entry positions].
        var all = new List<int>(decode.Count + tileMeta.Count + tileRows.Count + (2 * batch.RowCount) + blockTables.Count + entryPositions.Count);
        DecodeMetaOffset = Append(decode);
        TileMetaOffset = Append(tileMeta);
        TileRowsOffset = Append(tileRows);
        RowPositionOffset = Append(batch.RowPosition);
        RowDepthOffset = Append(batch.RowDepth);
        BlockTablesOffset = Append(blockTables);
        EntryPositionsOffset = Append(entryPositions);
        Ints = [.. all];
        Slots = batch.RowSlot;
        BlockSize = batch.BlockSize;

        int Append(IEnumerable<int> values)
        {
            int offset = all.Count;
            all.AddRange(values);
            return offset;
        }
    }

    public int BlockSize { get; }

    public int TileRows { get; }

    public int RowCount { get; }

    public int DecodeItems { get; }

    /// <summary>The most entries any decode row sees.</summary>
    public int MaxDecodeEntries { get; }

    /// <summary>Entries read by all decode rows together (for bandwidth accounting).</summary>
    public long DecodeEntries { get; }

    public int TileCount { get; }

    public int[] Ints { get; }

    public long[] Slots { get; }

    public int DecodeMetaOffset { get; }

    public int TileMetaOffset { get; }

    public int TileRowsOffset { get; }

    public int RowPositionOffset { get; }

    public int RowDepthOffset { get; }

    public int BlockTablesOffset { get; }

    public int EntryPositionsOffset { get; }

    /// <summary>
    /// Entries per decode split: long contexts are cut so that the grid has a few waves of blocks
    /// even at batch 1.
    /// </summary>
    public (int SplitSize, int MaxSplits) DecodeSplits(int kvHeads, int multiprocessors)
    {
        if (DecodeItems == 0)
        {
            return (64, 1);
        }

        int longest = Math.Max(1, MaxDecodeEntries);
        long items = (long)DecodeItems * kvHeads;
        int wanted = (int)Math.Clamp((4L * multiprocessors + items - 1) / items, 1, Math.Max(1, longest / 256));
        int splitSize = (((longest + wanted - 1) / wanted) + 63) / 64 * 64;
        return (splitSize, (longest + splitSize - 1) / splitSize);
    }
}
