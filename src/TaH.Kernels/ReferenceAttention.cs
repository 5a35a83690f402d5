using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Kernels;

/// <summary>
/// The CPU reference: gathers each sequence's visible entries into a padded dense batch and
/// applies the duo-causal rule as an additive mask. Clear rather than fast; the CUDA kernels are
/// checked against it.
/// </summary>
public sealed class ReferenceAttention : IPagedAttention
{
    public AttentionPlan Prepare(AttentionBatch batch, Device device) => new Plan(batch, device);

    public Tensor Forward(AttentionPlan plan, Tensor q, Tensor k, Tensor v, LayerKv kv, double scale)
    {
        var p = (Plan)plan;
        using var scope = NewDisposeScope();

        var keys = kv.Keys;
        var values = kv.Values;
        keys.index_copy_(0, p.WriteSlots, k);
        values.index_copy_(0, p.WriteSlots, v);

        long heads = q.shape[1], kvHeads = k.shape[1], headDim = q.shape[2];
        long groups = heads / kvHeads;
        long s = p.SequenceCount, r = p.MaxRows, n = p.MaxEntries;

        // [S, kvHeads, groups, R, D]: query head h reads kv head h / groups, as HF's repeat_kv.
        var qs = q.index_select(0, p.QueryRows).view(s, r, kvHeads, groups, headDim).permute(0, 2, 3, 1, 4);
        var ks = keys.index_select(0, p.EntrySlots).view(s, n, kvHeads, 1, headDim).permute(0, 2, 3, 1, 4);
        var vs = values.index_select(0, p.EntrySlots).view(s, n, kvHeads, 1, headDim).permute(0, 2, 3, 1, 4);

        var scores = qs.matmul(ks.transpose(-1, -2)).mul_(PinnedScalars.Of(scale)).add_(p.Mask, PinnedScalars.One);
        var output = scores.softmax(-1).matmul(vs); // [S, kvHeads, groups, R, D]
        var rows = output.permute(0, 3, 1, 2, 4).reshape(s * r, heads, headDim).index_select(0, p.RowToPadded);
        return rows.MoveToOuterDisposeScope();
    }

    private sealed class Plan : AttentionPlan
    {
        public Plan(AttentionBatch batch, Device device)
            : base(batch)
        {
            // Group rows by sequence, keeping their order.
            var rowsOf = new List<int>[batch.Sequences.Count];
            for (int row = 0; row < batch.RowCount; row++)
            {
                (rowsOf[batch.RowSequence[row]] ??= []).Add(row);
            }

            var active = Enumerable.Range(0, rowsOf.Length).Where(i => rowsOf[i] is not null).ToArray();
            SequenceCount = active.Length;
            MaxRows = active.Max(i => rowsOf[i].Count);

            // Each sequence contributes every entry up to its rows' deepest level and last position.
            var entries = new List<(long Slot, int Position, int Depth)>[active.Length];
            for (int a = 0; a < active.Length; a++)
            {
                var rows = rowsOf[active[a]];
                int maxDepth = rows.Max(row => batch.RowDepth[row]);
                int maxPosition = rows.Max(row => batch.RowPosition[row]);
                var sequence = batch.Sequences[active[a]];
                var list = new List<(long, int, int)>();
                for (int depth = 1; depth <= Math.Min(maxDepth, sequence.Depths.Count); depth++)
                {
                    var table = sequence.Depths[depth - 1];
                    for (int i = 0; i < table.Count && table.Positions[i] <= maxPosition; i++)
                    {
                        list.Add((batch.SlotOf(table, i), table.Positions[i], depth));
                    }
                }

                entries[a] = list;
            }

            MaxEntries = Math.Max(1, entries.Max(e => e.Count));

            var queryRows = new long[SequenceCount * MaxRows];
            var rowToPadded = new long[batch.RowCount];
            var entrySlots = new long[SequenceCount * MaxEntries];
            var mask = new float[SequenceCount * MaxRows * MaxEntries];
            for (int a = 0; a < active.Length; a++)
            {
                var rows = rowsOf[active[a]];
                var list = entries[a];
                for (int e = 0; e < list.Count; e++)
                {
                    entrySlots[(a * MaxEntries) + e] = list[e].Slot;
                }

                for (int j = 0; j < MaxRows; j++)
                {
                    int padded = (a * MaxRows) + j;
                    var maskRow = mask.AsSpan(padded * MaxEntries, MaxEntries);
                    if (j >= rows.Count)
                    {
                        queryRows[padded] = rows[0]; // padding: any real row; its output is dropped
                        continue;
                    }

                    int row = rows[j];
                    queryRows[padded] = row;
                    rowToPadded[row] = padded;
                    int position = batch.RowPosition[row], depth = batch.RowDepth[row];
                    for (int e = 0; e < MaxEntries; e++)
                    {
                        bool visible = e < list.Count && list[e].Position <= position && list[e].Depth <= depth;
                        maskRow[e] = visible ? 0f : float.NegativeInfinity;
                    }
                }
            }

            WriteSlots = tensor(batch.RowSlot, device: device);
            QueryRows = tensor(queryRows, device: device);
            RowToPadded = tensor(rowToPadded, device: device);
            EntrySlots = tensor(entrySlots, device: device);
            Mask = tensor(mask, [SequenceCount, 1, 1, MaxRows, MaxEntries], device: device);
        }

        public int SequenceCount { get; }

        public int MaxRows { get; }

        public int MaxEntries { get; }

        public Tensor WriteSlots { get; }

        public Tensor QueryRows { get; }

        public Tensor RowToPadded { get; }

        public Tensor EntrySlots { get; }

        public Tensor Mask { get; }

        protected override void Dispose(bool disposing)
        {
            if (!disposing)
            {
                return;
            }

            WriteSlots.Dispose();
            QueryRows.Dispose();
            RowToPadded.Dispose();
            EntrySlots.Dispose();
            Mask.Dispose();
        }
    }
}
