using TaH.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Engine.Tests.Kernels;

/// <summary>
/// The paged duo-causal attention implementations against a naive computation written here: for
/// each row, loop over the sequence's entries, keep those the rule allows, softmax in double
/// precision.
/// </summary>
public class ReferenceAttentionTests
{
    public static TheoryData<string, int, int, int, int, int, int, int> Cases()
    {
        var data = new TheoryData<string, int, int, int, int, int, int, int>();
        foreach (string backend in new[] { "reference", "cpu" })
        {
            // backend, sequences, heads, kvHeads, headDim, blockSize, most rows of one sequence, least entries (0: a few)
            data.Add(backend, 1, 4, 2, 8, 4, 4, 0);
            data.Add(backend, 3, 4, 4, 16, 2, 4, 0);
            data.Add(backend, 5, 8, 2, 4, 3, 4, 0);
            data.Add(backend, 4, 4, 2, 16, 4, 20, 0); // some sequences past CpuPagedAttention.MaxDirectRows
        }

        // Qwen3's grouping (2 query heads per KV head) at head sizes of whole 32s: the CPU's paired
        // path, with one row (its KV heads split over the threads) and with several.
        data.Add("cpu", 1, 16, 8, 128, 16, 1, 0);
        data.Add("cpu", 3, 4, 2, 64, 4, 4, 0);

        // Long contexts: few rows are split over their entries, each part with its own softmax,
        // merged after (one row; two; the unpaired path; ranges that come out empty for a short row).
        data.Add("cpu", 1, 16, 8, 128, 16, 1, 300);
        data.Add("cpu", 2, 16, 8, 128, 16, 1, 150);
        data.Add("cpu", 1, 6, 2, 16, 4, 2, 200);
        data.Add("cpu", 3, 4, 2, 64, 8, 1, 100);

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesNaiveDuoCausalAttention(string backend, int sequences, int heads, int kvHeads, int headDim, int blockSize, int maxRows, int minEntries)
    {
        var random = new Random(1234 + sequences + minEntries);
        // Room for every sequence's depth-1 and depth-2 entries, whole blocks each.
        int blocks = minEntries == 0 ? 64 : sequences * (((4 * minEntries) / blockSize) + 4);
        using var keys = randn(blocks * blockSize, kvHeads, headDim);
        using var values = randn(blocks * blockSize, kvHeads, headDim);

        // Blocks handed out in a shuffled order, as a pool would after some churn.
        var freeBlocks = new Queue<int>(Enumerable.Range(0, blocks).OrderBy(_ => random.Next()));
        var seqs = new List<AttentionSequence>();
        var rowSeq = new List<int>();
        var rowPos = new List<int>();
        var rowDepth = new List<int>();
        var rowSlot = new List<long>();
        for (int s = 0; s < sequences; s++)
        {
            int length = minEntries > 0 ? random.Next(minEntries, 2 * minEntries) : random.Next(1, Math.Max(12, maxRows + 8));
            var depth1 = Entries(Enumerable.Range(0, length).ToArray());
            var iterated = Enumerable.Range(0, length).Where(_ => random.NextDouble() < 0.4).ToArray();
            var depth2 = Entries(iterated);
            seqs.Add(new AttentionSequence([depth1, depth2]));

            // Rows: a few of this sequence's entries at either depth (their own slot is their write slot).
            var candidates = Enumerable.Range(0, depth1.Count).Select(i => (Depth: 1, Index: i))
                .Concat(Enumerable.Range(0, depth2.Count).Select(i => (Depth: 2, Index: i)))
                .OrderBy(c => minEntries > 0 ? -(c.Depth == 1 ? depth1 : depth2).Positions[c.Index] : random.Next()) // long contexts: decode rows, at the end
                .Take(random.Next(1, maxRows + 1)).ToList();
            foreach (var (depth, index) in candidates)
            {
                var table = depth == 1 ? depth1 : depth2;
                rowSeq.Add(s);
                rowPos.Add(table.Positions[index]);
                rowDepth.Add(depth);
                rowSlot.Add(((long)table.Blocks[index / blockSize] * blockSize) + (index % blockSize));
            }
        }

        var batch = new AttentionBatch(blockSize, seqs, [.. rowSeq], [.. rowPos], [.. rowDepth], [.. rowSlot]);
        int rows = batch.RowCount;
        if (maxRows > CpuPagedAttention.MaxDirectRows)
        {
            // Both of CpuPagedAttention's paths: direct rows and a sequence with many rows.
            Assert.Contains(rowSeq.GroupBy(s => s), g => g.Count() > CpuPagedAttention.MaxDirectRows);
            Assert.Contains(rowSeq.GroupBy(s => s), g => g.Count() <= CpuPagedAttention.MaxDirectRows);
        }
        using var q = randn(rows, heads, headDim);
        using var slotIndex = tensor(rowSlot.ToArray());
        using var k = keys.index_select(0, slotIndex);
        using var v = values.index_select(0, slotIndex);
        double scale = 1.0 / Math.Sqrt(headDim);

        IPagedAttention attention = backend == "cpu" ? new CpuPagedAttention() : new ReferenceAttention();
        using var plan = attention.Prepare(batch, CPU);
        using var output = attention.Forward(plan, q, k, v, new LayerKv(keys, values), scale);

        var expected = Naive(batch, q, keys, values, scale);
        var actual = output.data<float>().ToArray();
        Assert.Equal(expected.Length, actual.Length);

        // fp32 against double, every rounding (2^-24) adding up, in whatever order the vector width
        // sums: the scores (dot products over headDim <= 16 of N(0,1) entries, times 1/4 or more
        // strongly scaled) err by <= 16 * 16 * 2^-24 / 4 = 3.8e-6, the softmax weights by twice that
        // relative, the output (a weighted sum of <= 40 values, |v| < 5) by <= 5 * (7.6e-6 + 40 *
        // 2^-24) = 5e-5. 1e-4 is above that bound; a wrong mask entry moves outputs by 1e-2 and more.
        // Long contexts take the same bound with their own terms: headDim * 16 * 2^-24 / 4 per
        // score and n * 2^-24 for a sum of n values (a merge of parts rescales each once more).
        int visible = 2 * 2 * minEntries;
        double tolerance = minEntries == 0 ? 1e-4 : 5 * ((2 * headDim * 16 * Math.Pow(2, -24) / 4) + ((visible + 2) * Math.Pow(2, -24)));
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) < tolerance, $"element {i}: expected {expected[i]}, got {actual[i]} (tolerance {tolerance:G3})");
        }

        KvEntries Entries(int[] positions)
        {
            int count = positions.Length;
            var owned = Enumerable.Range(0, (count + blockSize - 1) / blockSize).Select(_ => freeBlocks.Dequeue()).ToArray();
            return new KvEntries(owned, positions, count);
        }
    }

    [Theory]
    [InlineData("reference")]
    [InlineData("cpu")]
    public void WritesTheRowsKeysAndValuesIntoTheirSlots(string backend)
    {
        using var keys = zeros(8, 1, 2);
        using var values = zeros(8, 1, 2);
        var sequence = new AttentionSequence([new KvEntries([1], [0, 1], 2)]);
        var batch = new AttentionBatch(4, [sequence], [0, 0], [0, 1], [1, 1], [4, 5]);
        using var q = ones(2, 1, 2);
        using var k = tensor(new float[] { 1, 2, 3, 4 }, [2, 1, 2]);
        using var v = tensor(new float[] { 5, 6, 7, 8 }, [2, 1, 2]);
        IPagedAttention attention = backend == "cpu" ? new CpuPagedAttention() : new ReferenceAttention();
        using var plan = attention.Prepare(batch, CPU);
        using var output = attention.Forward(plan, q, k, v, new LayerKv(keys, values), 1.0);

        Assert.Equal([1f, 2f, 3f, 4f], keys.narrow(0, 4, 2).data<float>().ToArray());
        Assert.Equal([5f, 6f, 7f, 8f], values.narrow(0, 4, 2).data<float>().ToArray());

        // Row 0 sees only itself: its output is its own value.
        Assert.Equal([5f, 6f], output[0, 0].data<float>().ToArray());
    }

    [Fact]
    public void ADecodeStepOnTensorsTheDirectPathDoesNotReadGoesToTheReference()
    {
        // Float64 rows of a two-entry sequence: both would go direct (few rows), but the direct
        // path reads fp32 only, so the whole batch takes the reference's plan.
        using var keys = zeros(8, 1, 2, dtype: ScalarType.Float64);
        using var values = zeros(8, 1, 2, dtype: ScalarType.Float64);
        var sequence = new AttentionSequence([new KvEntries([1], [0, 1], 2)]);
        var batch = new AttentionBatch(4, [sequence], [0, 0], [0, 1], [1, 1], [4, 5]);
        using var q = ones(2, 1, 2, dtype: ScalarType.Float64);
        using var k = tensor(new double[] { 1, 0, 0, 1 }, [2, 1, 2]);
        using var v = tensor(new double[] { 5, 6, 7, 8 }, [2, 1, 2]);
        IPagedAttention attention = new CpuPagedAttention();
        using var plan = attention.Prepare(batch, CPU);
        using var output = attention.Forward(plan, q, k, v, new LayerKv(keys, values), 1.0);

        // Row 0 sees itself; row 1 sees both keys with equal scores (1 each): the mean of the values.
        Assert.Equal([5.0, 6.0, 6.0, 7.0], output.data<double>().ToArray());
    }

    private static float[] Naive(AttentionBatch batch, Tensor q, Tensor keys, Tensor values, double scale)
    {
        int rows = batch.RowCount;
        long heads = q.shape[1], headDim = q.shape[2], kvHeads = keys.shape[1];
        var qa = q.data<float>().ToArray();
        var ka = keys.data<float>().ToArray();
        var va = values.data<float>().ToArray();
        var result = new float[rows * heads * headDim];
        for (int r = 0; r < rows; r++)
        {
            var sequence = batch.Sequences[batch.RowSequence[r]];
            var visible = new List<long>();
            for (int d = 1; d <= sequence.Depths.Count; d++)
            {
                var table = sequence.Depths[d - 1];
                for (int i = 0; i < table.Count; i++)
                {
                    if (d <= batch.RowDepth[r] && table.Positions[i] <= batch.RowPosition[r])
                    {
                        visible.Add(batch.SlotOf(table, i));
                    }
                }
            }

            for (int h = 0; h < heads; h++)
            {
                long kvh = h / (heads / kvHeads);
                var scores = visible.Select(slot =>
                {
                    double dot = 0;
                    for (int j = 0; j < headDim; j++)
                    {
                        dot += qa[(((r * heads) + h) * headDim) + j] * ka[(((slot * kvHeads) + kvh) * headDim) + j];
                    }

                    return dot * scale;
                }).ToArray();
                double max = scores.Max();
                var weights = scores.Select(s => Math.Exp(s - max)).ToArray();
                double sum = weights.Sum();
                for (int j = 0; j < headDim; j++)
                {
                    double acc = 0;
                    for (int e = 0; e < visible.Count; e++)
                    {
                        acc += weights[e] / sum * va[(((visible[e] * kvHeads) + kvh) * headDim) + j];
                    }

                    result[(((r * heads) + h) * headDim) + j] = (float)acc;
                }
            }
        }

        return result;
    }
}
