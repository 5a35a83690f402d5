using System.Buffers;
using System.Runtime.Intrinsics;
using TaH.Kernels.Cpu;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Kernels;

/// <summary>
/// Duo-causal paged attention on the CPU. A row of a sequence with few rows in the step (a
/// decode token, a latent iteration) reads its visible entries straight from the pool's blocks,
/// one (row, KV head) per work item, with SIMD dot products and no gathered copy of the cache:
/// decode costs one read of the visible keys and values. A sequence with many rows (a prompt
/// chunk) goes to the <see cref="ReferenceAttention"/>'s batched matrix products, which win there.
/// </summary>
public sealed class CpuPagedAttention : IPagedAttention
{
    /// <summary>Sequences with more rows than this in a step take the batched path.</summary>
    public const int MaxDirectRows = 8;

    private readonly ReferenceAttention _reference = new();

    public AttentionPlan Prepare(AttentionBatch batch, Device device) => new Plan(batch, device, _reference);

    public Tensor Forward(AttentionPlan plan, Tensor q, Tensor k, Tensor v, LayerKv kv, double scale)
    {
        var p = (Plan)plan;
        if (p.Whole is { } whole)
        {
            return _reference.Forward(whole, q, k, v, kv, scale);
        }

        if (q.dtype != ScalarType.Float32 || kv.Keys.dtype != ScalarType.Float32 || q.device_type != DeviceType.CPU)
        {
            // Tensors the direct path does not read: the reference, on a plan for this call only
            // (made here, inside the caller's dispose scope, it cannot outlive the call).
            using var once = _reference.Prepare(p.Batch, q.device);
            return _reference.Forward(once, q, k, v, kv, scale);
        }

        using var scope = NewDisposeScope();
        kv.Keys.index_copy_(0, p.AllSlots!, k);
        kv.Values.index_copy_(0, p.AllSlots!, v);
        var output = empty(q.shape, dtype: ScalarType.Float32, device: q.device);
        if (p.Batched is { } batched)
        {
            var rows = p.BatchedRows!;
            var part = _reference.Forward(batched, q.index_select(0, rows), k.index_select(0, rows), v.index_select(0, rows), kv, scale);
            output.index_copy_(0, rows, part);
        }

        Direct(p, q.contiguous(), kv, output, (float)scale);
        return output.MoveToOuterDisposeScope();
    }

    private static unsafe void Direct(Plan p, Tensor q, LayerKv kv, Tensor output, float scale)
    {
        // Raw pointers into contiguous CPU storage (the tensors outlive the run). The pool the
        // weight kernels use: one set of threads, which idle blocked between runs.
        var job = DirectJob.ForThread;
        job.Set(p, q, kv, output, scale, CpuWorkerPool.Shared.Threads);
        CpuWorkerPool.Shared.Run(job, p.Direct.Length * job.Splits * job.Chunks);
        job.Merge();
        job.Clear();
    }

    /// <summary>
    /// One (row, range of KV heads, range of entries) of the direct rows: scores, softmax and the
    /// weighted values. Few rows are shared out over their entries (each item then keeps its
    /// softmax's max and sum, and <see cref="Merge"/> rescales and adds the parts), so an item reads
    /// whole entries, all KV heads of a position side by side: split over heads, items had read
    /// 1-2 KB of each 4 KB entry, and the prefetchers started over at every entry.
    /// </summary>
    private sealed unsafe class DirectJob : PoolJob
    {
        /// <summary>Head dimensions per register pass of the paired path (4 x 8 floats per head).</summary>
        private const int PairChunk = 32;

        /// <summary>Entries below which a row is not split further: the merge and a pool item cost more than they save.</summary>
        private const int MinChunkEntries = 64;

        /// <summary>Entries per block of the value pass: 8 entries of 8 KV heads of 128 fp32 are L1's 32 KB.</summary>
        private const int ValueBlock = 8;

        private readonly NativeScratch _parts = new();
        private float* _partOutputs;
        private float* _partMax;
        private float* _partSum;

        [ThreadStatic]
        private static DirectJob? _forThread;

        private Plan? _plan;
        private float* _q;
        private float* _keys;
        private float* _values;
        private float* _output;
        private float _scale;
        private int _heads;
        private int _headDim;

        public static DirectJob ForThread => _forThread ??= new DirectJob();

        public int KvHeads { get; private set; }

        /// <summary>Items per row and entry range: its KV heads in this many ranges (more than one only when rows are too few to share and too short to split by entries).</summary>
        public int Splits { get; private set; }

        /// <summary>Entry ranges per row, each an item with a softmax of its own (1: the row's softmax is whole).</summary>
        public int Chunks { get; private set; }

        public void Set(Plan plan, Tensor q, LayerKv kv, Tensor output, float scale, int threads)
        {
            _plan = plan;
            _heads = (int)q.shape[1];
            _headDim = (int)q.shape[2];
            KvHeads = (int)kv.Keys.shape[1];
            int rows = plan.Direct.Length, longest = 0;
            for (int i = 0; i < rows; i++)
            {
                longest = Math.Max(longest, plan.EntryOffsets[i + 1] - plan.EntryOffsets[i]);
            }

            Chunks = Math.Clamp(Math.Min(longest / MinChunkEntries, ((2 * threads) + rows - 1) / rows), 1, CpuWorkerPool.MaxItems / rows);
            Splits = 1;
            while (Chunks == 1 && rows * Splits < 2 * threads && Splits < KvHeads && KvHeads % (Splits * 2) == 0)
            {
                Splits *= 2;
            }

            if (Chunks > 1)
            {
                long parts = (long)rows * Chunks * _heads;
                _partOutputs = _parts.Reserve(parts * (_headDim + 2));
                _partMax = _partOutputs + (parts * _headDim);
                _partSum = _partMax + parts;
            }

            _q = (float*)Cuda.CudaNative.THSTensor_data(q.Handle);
            _keys = (float*)Cuda.CudaNative.THSTensor_data(kv.Keys.Handle);
            _values = (float*)Cuda.CudaNative.THSTensor_data(kv.Values.Handle);
            _output = (float*)Cuda.CudaNative.THSTensor_data(output.Handle);
            _scale = scale;
        }

        public void Clear() => _plan = null;

        /// <summary>
        /// With entry ranges, each query head's output from its parts: softmax(s) v over the union is
        /// sum_c e^(m_c - m) o_c / sum_c e^(m_c - m) l_c, for each part's max m_c, sum l_c and
        /// unnormalised weighted values o_c, and m the largest m_c.
        /// </summary>
        public void Merge()
        {
            if (Chunks == 1)
            {
                return;
            }

            var p = _plan!;
            for (int i = 0; i < p.Direct.Length; i++)
            {
                for (int h = 0; h < _heads; h++)
                {
                    float max = float.NegativeInfinity;
                    for (int c = 0; c < Chunks; c++)
                    {
                        max = Math.Max(max, _partMax[Part(i, c, h)]);
                    }

                    var result = new Span<float>(_output + ((((long)p.Direct[i] * _heads) + h) * _headDim), _headDim);
                    result.Clear();
                    float total = 0;
                    for (int c = 0; c < Chunks; c++)
                    {
                        long part = Part(i, c, h);
                        if (_partSum[part] == 0)
                        {
                            continue; // an empty range
                        }

                        float factor = MathF.Exp(_partMax[part] - max);
                        total += factor * _partSum[part];
                        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(_partOutputs + (part * _headDim), _headDim), factor, result, result);
                    }

                    TensorPrimitives.Divide(result, total, result);
                }
            }
        }

        /// <summary>The part of (direct row i, entry range c, query head h).</summary>
        private long Part(int i, int c, int h) => ((((long)i * Chunks) + c) * _heads) + h;

        /// <summary>
        /// One row, a range of its KV heads. An entry's keys (and values) of all heads are one
        /// contiguous run, so the entries are walked once for all the range's heads: walking them
        /// per head would touch a different page for every entry of every head.
        /// </summary>
        public override void Execute(int item)
        {
            var p = _plan!;
            int kvHeads = KvHeads, heads = _heads, headDim = _headDim, groups = heads / kvHeads;
            int i = item / (Splits * Chunks), chunk = item / Splits % Chunks, perItem = kvHeads / Splits, firstHead = (item % Splits) * perItem, row = p.Direct[i];
            int rowFirst = p.EntryOffsets[i], rowCount = p.EntryOffsets[i + 1] - rowFirst;
            int first = rowFirst + (int)((long)rowCount * chunk / Chunks), count = rowFirst + (int)((long)rowCount * (chunk + 1) / Chunks) - first;
            if (count == 0)
            {
                for (int h = firstHead * groups; h < (firstHead + perItem) * groups; h++)
                {
                    _partSum[Part(i, chunk, h)] = 0;
                }

                return;
            }

            long[] slots = p.EntrySlots;
            int span = groups * count;
            float[] rented = ArrayPool<float>.Shared.Rent(perItem * span);
            try
            {
                var all = rented.AsSpan(0, perItem * span);
                bool paired = groups == 2 && headDim % PairChunk == 0 && Vector256.IsHardwareAccelerated;
                for (int e = 0; e < count; e++)
                {
                    for (int j = 0; j < perItem; j++)
                    {
                        int h = firstHead + j;
                        float* query = _q + ((((long)row * heads) + (h * groups)) * headDim);
                        float* key = Entry(_keys, slots[first + e], h);
                        var scores = all.Slice(j * span, span);
                        if (paired)
                        {
                            PairScore(query, key, headDim, scores, count, e);
                            continue;
                        }

                        for (int g = 0; g < groups; g++)
                        {
                            scores[(g * count) + e] = TensorPrimitives.Dot(new ReadOnlySpan<float>(query + (g * headDim), headDim), new ReadOnlySpan<float>(key, headDim)) * _scale;
                        }
                    }
                }

                for (int j = 0; j < perItem; j++)
                {
                    int h = firstHead + j;
                    var scores = all.Slice(j * span, span);
                    for (int g = 0; g < groups; g++)
                    {
                        var weights = scores.Slice(g * count, count);
                        if (Chunks == 1)
                        {
                            TensorPrimitives.SoftMax(weights, weights);
                            continue;
                        }

                        // A part: e^(s - m) with its own max m and sum l, for Merge.
                        long part = Part(i, chunk, (h * groups) + g);
                        float max = TensorPrimitives.Max(weights);
                        TensorPrimitives.Subtract(weights, max, weights);
                        TensorPrimitives.Exp(weights, weights);
                        _partMax[part] = max;
                        _partSum[part] = TensorPrimitives.Sum(weights);
                    }

                    new Span<float>(Output(i, row, chunk, h * groups), groups * headDim).Clear();
                }

                // Values a few entries at a time for every head: the block's entries (all heads of
                // a position side by side) stay in L1 while each head's slice is read. Walked a head
                // at a time over the whole range instead, the reads strode a whole entry apart and
                // ran at well under half the memory's speed.
                for (int e0 = 0; e0 < count; e0 += ValueBlock)
                {
                    int block = Math.Min(ValueBlock, count - e0);
                    for (int j = 0; j < perItem; j++)
                    {
                        int h = firstHead + j;
                        var scores = all.Slice(j * span, span);
                        float* output = Output(i, row, chunk, h * groups);
                        if (paired)
                        {
                            PairValues(output, headDim, slots, first + e0, block, h, scores.Slice(e0, block), scores.Slice(count + e0, block));
                            continue;
                        }

                        for (int g = 0; g < groups; g++)
                        {
                            var weights = scores.Slice((g * count) + e0, block);
                            var result = new Span<float>(output + (g * headDim), headDim);
                            for (int e = 0; e < block; e++)
                            {
                                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(Entry(_values, slots[first + e0 + e], h), headDim), weights[e], result, result);
                            }
                        }
                    }
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(rented);
            }
        }

        private float* Entry(float* pool, long slot, int head) => pool + (((slot * KvHeads) + head) * _headDim);

        /// <summary>Both query heads of a KV head (Qwen3's 2:1 grouping) against one key, read once.</summary>
        private void PairScore(float* query, float* key, int headDim, Span<float> scores, int count, int e)
        {
            float* q1 = query + headDim;
            Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default;
            for (int d = 0; d < headDim; d += 16)
            {
                var k0 = Vector256.Load(key + d);
                var k1 = Vector256.Load(key + d + 8);
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(query + d), k0, a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(query + d + 8), k1, a1);
                b0 = Vector256.FusedMultiplyAdd(Vector256.Load(q1 + d), k0, b0);
                b1 = Vector256.FusedMultiplyAdd(Vector256.Load(q1 + d + 8), k1, b1);
            }

            scores[e] = Vector256.Sum(a0 + a1) * _scale;
            scores[count + e] = Vector256.Sum(b0 + b1) * _scale;
        }

        /// <summary>Where (direct row i, entry range c)'s output of query head h goes: the row's output, or its part.</summary>
        private float* Output(int i, int row, int chunk, int h) => Chunks == 1
            ? _output + ((((long)row * _heads) + h) * _headDim)
            : _partOutputs + (Part(i, chunk, h) * _headDim);

        /// <summary>Adds both heads' weighted sums of a block of values, 32 dimensions at a time in registers, each value read once.</summary>
        private void PairValues(float* output, int headDim, long[] slots, int first, int count, int h, ReadOnlySpan<float> weightsA, ReadOnlySpan<float> weightsB)
        {
            for (int d = 0; d < headDim; d += PairChunk)
            {
                float* o = output + d, ob = output + headDim + d;
                Vector256<float> a0 = Vector256.Load(o), a1 = Vector256.Load(o + 8), a2 = Vector256.Load(o + 16), a3 = Vector256.Load(o + 24);
                Vector256<float> b0 = Vector256.Load(ob), b1 = Vector256.Load(ob + 8), b2 = Vector256.Load(ob + 16), b3 = Vector256.Load(ob + 24);
                for (int e = 0; e < count; e++)
                {
                    float* v = Entry(_values, slots[first + e], h) + d;
                    var wa = Vector256.Create(weightsA[e]);
                    var wb = Vector256.Create(weightsB[e]);
                    var v0 = Vector256.Load(v);
                    var v1 = Vector256.Load(v + 8);
                    var v2 = Vector256.Load(v + 16);
                    var v3 = Vector256.Load(v + 24);
                    a0 = Vector256.FusedMultiplyAdd(v0, wa, a0);
                    a1 = Vector256.FusedMultiplyAdd(v1, wa, a1);
                    a2 = Vector256.FusedMultiplyAdd(v2, wa, a2);
                    a3 = Vector256.FusedMultiplyAdd(v3, wa, a3);
                    b0 = Vector256.FusedMultiplyAdd(v0, wb, b0);
                    b1 = Vector256.FusedMultiplyAdd(v1, wb, b1);
                    b2 = Vector256.FusedMultiplyAdd(v2, wb, b2);
                    b3 = Vector256.FusedMultiplyAdd(v3, wb, b3);
                }

                a0.Store(o);
                a1.Store(o + 8);
                a2.Store(o + 16);
                a3.Store(o + 24);
                b0.Store(ob);
                b1.Store(ob + 8);
                b2.Store(ob + 16);
                b3.Store(ob + 24);
            }
        }
    }

    private sealed class Plan : AttentionPlan
    {
        public Plan(AttentionBatch batch, Device device, ReferenceAttention reference)
            : base(batch)
        {
            var rowsOf = new List<int>[batch.Sequences.Count];
            for (int row = 0; row < batch.RowCount; row++)
            {
                (rowsOf[batch.RowSequence[row]] ??= []).Add(row);
            }

            bool Many(int s) => rowsOf[s] is { Count: > MaxDirectRows };
            Direct = [.. Enumerable.Range(0, batch.RowCount).Where(r => !Many(batch.RowSequence[r]))];
            if (Direct.Length == 0)
            {
                Whole = reference.Prepare(batch, device);
                return;
            }

            // Each direct row's visible entries: at every depth up to its own, the entries at
            // positions up to its own (positions ascend within a table, so a prefix of it).
            EntryOffsets = new int[Direct.Length + 1];
            var entries = new List<long>();
            for (int i = 0; i < Direct.Length; i++)
            {
                int row = Direct[i];
                var sequence = batch.Sequences[batch.RowSequence[row]];
                for (int depth = 1; depth <= Math.Min(batch.RowDepth[row], sequence.Depths.Count); depth++)
                {
                    var table = sequence.Depths[depth - 1];
                    int visible = UpperBound(table.Positions, table.Count, batch.RowPosition[row]);
                    for (int e = 0; e < visible; e++)
                    {
                        entries.Add(batch.SlotOf(table, e));
                    }
                }

                EntryOffsets[i + 1] = entries.Count;
            }

            EntrySlots = [.. entries];
            AllSlots = tensor(batch.RowSlot, device: device);

            var batchedSequences = Enumerable.Range(0, batch.Sequences.Count).Where(Many).ToArray();
            if (batchedSequences.Length > 0)
            {
                var rows = batchedSequences.SelectMany(s => rowsOf[s]).ToArray();
                var index = batchedSequences.Select((s, i) => (s, i)).ToDictionary(x => x.s, x => x.i);
                var sub = new AttentionBatch(
                    batch.BlockSize,
                    [.. batchedSequences.Select(s => batch.Sequences[s])],
                    [.. rows.Select(r => index[batch.RowSequence[r]])],
                    [.. rows.Select(r => batch.RowPosition[r])],
                    [.. rows.Select(r => batch.RowDepth[r])],
                    [.. rows.Select(r => batch.RowSlot[r])]);
                Batched = reference.Prepare(sub, device);
                BatchedRows = tensor(rows.Select(r => (long)r).ToArray(), device: device);
            }
        }

        /// <summary>The reference's plan for the whole batch, when no row goes direct.</summary>
        public AttentionPlan? Whole { get; }

        public int[] Direct { get; }

        public int[] EntryOffsets { get; } = [];

        public long[] EntrySlots { get; } = [];

        public Tensor? AllSlots { get; }

        public AttentionPlan? Batched { get; }

        public Tensor? BatchedRows { get; }

        private static int UpperBound(int[] ascending, int count, int position)
        {
            int lo = 0, hi = count;
            while (lo < hi)
            {
                int mid = (lo + hi) / 2;
                if (ascending[mid] <= position)
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

        protected override void Dispose(bool disposing)
        {
            if (!disposing)
            {
                return;
            }

            Whole?.Dispose();
            Batched?.Dispose();
            AllSlots?.Dispose();
            BatchedRows?.Dispose();
        }
    }
}
