using TaH.Kernels.Cuda;
using static TorchSharp.torch;

namespace TaH.Kernels.Tests;

/// <summary>The host side of the CUDA attention: the metadata the kernels read, and the test reference itself.</summary>
public class AttentionLayoutTests
{
    [Fact]
    public void DecodeItemsCountExactlyTheVisibleEntriesPerDepth()
    {
        foreach (var c in AttentionCase.RandomSuite(5, 20))
        {
            var layout = new AttentionLayout(c.Batch);
            var b = c.Batch;
            var seen = new HashSet<int>();
            for (int item = 0; item < layout.DecodeItems; item++)
            {
                int at = layout.DecodeMetaOffset + (item * AttentionLayout.DecodeMetaStride);
                int row = layout.Ints[at];
                Assert.True(seen.Add(row));
                var sequence = b.Sequences[b.RowSequence[row]];
                for (int d = 0; d < AttentionLayout.MaxDepth; d++)
                {
                    int expected = d < sequence.Depths.Count && d + 1 <= b.RowDepth[row]
                        ? sequence.Depths[d].Positions.Take(sequence.Depths[d].Count).Count(p => p <= b.RowPosition[row])
                        : 0;
                    Assert.Equal(expected, layout.Ints[at + 2 + (2 * d)]);
                    if (expected > 0)
                    {
                        // The block table offset points at this sequence's table for that depth.
                        int blocks = layout.BlockTablesOffset + layout.Ints[at + 1 + (2 * d)];
                        Assert.Equal(sequence.Depths[d].Blocks[0], layout.Ints[blocks]);
                    }
                }
            }

            // Every row is served exactly once: by a decode item or by one prefill tile.
            for (int t = 0; t < layout.TileCount; t++)
            {
                int at = layout.TileMetaOffset + (t * AttentionLayout.TileMetaStride);
                int first = layout.Ints[at], count = layout.Ints[at + 1];
                Assert.InRange(count, 1, layout.TileRows);
                for (int i = 0; i < count; i++)
                {
                    int row = layout.Ints[layout.TileRowsOffset + first + i];
                    Assert.True(seen.Add(row));
                    var sequence = b.Sequences[b.RowSequence[row]];
                    for (int d = 0; d < sequence.Depths.Count && d < b.RowDepth[row]; d++)
                    {
                        int visible = sequence.Depths[d].Positions.Take(sequence.Depths[d].Count).Count(p => p <= b.RowPosition[row]);
                        Assert.True(layout.Ints[at + 2 + (3 * d) + 2] >= visible, "a tile must cover each of its rows' visible entries");
                    }
                }
            }

            Assert.Equal(b.RowCount, seen.Count);
        }
    }

    [Fact]
    public void TheDefaultLayoutMatchesTheDefaultPrefillKernel() =>
        Assert.Equal(AttentionLayout.DefaultTileRows, PrefillVariant.Default.TileRows);

    [Fact]
    public void SplitsCoverTheLongestContext()
    {
        var c = AttentionCase.Create(new Random(3), true, 16, 8, 128, 16, [5000], 0.06, (d1, _) => [(1, d1.Length - 1)], fillValues: false);
        var layout = new AttentionLayout(c.Batch);
        var (size, splits) = layout.DecodeSplits(8, 132);
        Assert.True(splits > 1, "one long row on a big GPU must be split");
        Assert.True(size * splits >= layout.MaxDecodeEntries);
        Assert.True(size * (splits - 1) < layout.MaxDecodeEntries);
        Assert.Equal(0, size % 64);
    }

    [Fact]
    public void TheTestReferenceAgreesWithTheCpuReferenceAttention()
    {
        foreach (var c in AttentionCase.RandomSuite(9, 6))
        {
            using var scope = NewDisposeScope();
            var b = c.Batch;
            var keys = tensor(c.KeyPool, [c.Slots, c.KvHeads, c.HeadDim]);
            var values = tensor(c.ValuePool, [c.Slots, c.KvHeads, c.HeadDim]);
            var slots = tensor(b.RowSlot);
            var q = tensor(c.Q, [b.RowCount, c.Heads, c.HeadDim]);
            var attention = new ReferenceAttention();
            using var plan = attention.Prepare(b, CPU);
            var output = attention.Forward(plan, q, keys.index_select(0, slots), values.index_select(0, slots), new LayerKv(keys, values), 1.0 / Math.Sqrt(c.HeadDim));
            var (rel, _) = AttentionCase.Compare(c.Reference(), output.data<float>().ToArray());
            // fp32 against double: relative L2 about 2^-24 * sqrt(head_dim + entries) (random rounding
            // over head_dim <= 128 and <= ~1000 entries) = 2e-6; measured at most 3.5e-7 on the
            // AVX-512, AVX2 and scalar paths of libtorch. 1e-5 allows any summation order.
            Assert.True(rel < 1e-5, $"{c.Describe()}: rel L2 {rel}");
        }
    }

    [Fact]
    public void SamplingReferenceHonoursGreedyTopKAndTopP()
    {
        var random = new Random(4);
        var logits = Enumerable.Range(0, 500).Select(_ => (float)random.NextDouble() * 8).ToArray();
        int argmax = Array.IndexOf(logits, logits.Max());
        Assert.Equal(argmax, FusedChecks.ReferenceSample(logits, 0f, 0, 1f, 0.3f).Token);
        Assert.Equal(argmax, FusedChecks.ReferenceSample(logits, 1f, 1, 1f, 0.99f).Token);
        Assert.Equal(argmax, FusedChecks.ReferenceSample(logits, 1f, 0, 1e-6f, 0.99f).Token);
        var top5 = logits.Select((v, i) => (v, i)).OrderByDescending(x => x.v).Take(5).Select(x => x.i).ToHashSet();
        for (int i = 0; i < 50; i++)
        {
            Assert.Contains((int)FusedChecks.ReferenceSample(logits, 2f, 5, 1f, random.NextSingle()).Token, top5);
        }
    }
}
