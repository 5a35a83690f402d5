namespace TaH.Kernels.Tests;

/// <summary>Host-side 16-bit float helpers (round to nearest even, as the GPU's cvt.rn).</summary>
internal static class Half16
{
    public static ushort ToBits(float value, bool bf16) =>
        bf16 ? ToBf16(value) : BitConverter.HalfToUInt16Bits((Half)value);

    public static float FromBits(ushort bits, bool bf16) =>
        bf16 ? BitConverter.UInt32BitsToSingle((uint)bits << 16) : (float)BitConverter.UInt16BitsToHalf(bits);

    public static float Round(float value, bool bf16) => FromBits(ToBits(value, bf16), bf16);

    private static ushort ToBf16(float value)
    {
        uint b = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return 0x7fc0;
        }

        b += 0x7fffu + ((b >> 16) & 1u);
        return (ushort)(b >> 16);
    }
}

/// <summary>
/// A random paged duo-causal attention problem: sequences with a dense depth-1 table and a sparse
/// depth-2 one in shuffled pool blocks, and a step of rows over them. Values are already rounded
/// to the 16-bit type, so a reference in double sees exactly what the kernel sees.
/// </summary>
internal sealed class AttentionCase
{
    public required AttentionBatch Batch { get; init; }

    public required int Heads { get; init; }

    public required int KvHeads { get; init; }

    public required int HeadDim { get; init; }

    public required bool Bf16 { get; init; }

    public required long Slots { get; init; }

    /// <summary>[rows, heads, headDim].</summary>
    public required float[] Q { get; init; }

    /// <summary>[slots, kvHeads, headDim]; the rows' own slots hold their new k and v.</summary>
    public required float[] KeyPool { get; init; }

    public required float[] ValuePool { get; init; }

    public string Describe() =>
        $"{(Bf16 ? "bf16" : "fp16")} D={HeadDim} H={Heads}/{KvHeads} bs={Batch.BlockSize} seqs={Batch.Sequences.Count} rows={Batch.RowCount} " +
        $"entries={Batch.Sequences.Sum(s => s.Depths.Sum(d => d.Count))}";

    /// <summary>The rows' new keys (or values): the pool rows at their slots.</summary>
    public float[] RowsOf(float[] pool)
    {
        int width = KvHeads * HeadDim;
        var result = new float[Batch.RowCount * width];
        for (int r = 0; r < Batch.RowCount; r++)
        {
            Array.Copy(pool, Batch.RowSlot[r] * width, result, (long)r * width, width);
        }

        return result;
    }

    public static ushort[] Bits(float[] values, bool bf16)
    {
        var bits = new ushort[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            bits[i] = Half16.ToBits(values[i], bf16);
        }

        return bits;
    }

    /// <summary>
    /// <paramref name="lengths"/> per sequence; <paramref name="rowsFor"/> picks each sequence's rows
    /// (depth, entry index) given its depth-1 and depth-2 positions.
    /// </summary>
    public static AttentionCase Create(
        Random random, bool bf16, int heads, int kvHeads, int headDim, int blockSize, int[] lengths, double deepShare,
        Func<int[], int[], IEnumerable<(int Depth, int Index)>> rowsFor, bool fillValues = true)
    {
        var depth2Positions = lengths.Select(l => Enumerable.Range(0, l).Where(_ => random.NextDouble() < deepShare).ToArray()).ToArray();
        int blocksNeeded = lengths.Select((l, s) => ((l + blockSize - 1) / blockSize) + ((depth2Positions[s].Length + blockSize - 1) / blockSize)).Sum();
        int blocks = blocksNeeded + 3;
        var free = new Queue<int>(Enumerable.Range(0, blocks).OrderBy(_ => random.Next()));

        var sequences = new List<AttentionSequence>();
        var rowSeq = new List<int>();
        var rowPos = new List<int>();
        var rowDepth = new List<int>();
        var rowSlot = new List<long>();
        for (int s = 0; s < lengths.Length; s++)
        {
            var d1 = Table(Enumerable.Range(0, lengths[s]).ToArray());
            var d2 = Table(depth2Positions[s]);
            sequences.Add(new AttentionSequence([d1, d2]));
            foreach (var (depth, index) in rowsFor(d1.Positions, d2.Positions))
            {
                var table = depth == 1 ? d1 : d2;
                rowSeq.Add(s);
                rowPos.Add(table.Positions[index]);
                rowDepth.Add(depth);
                rowSlot.Add(((long)table.Blocks[index / blockSize] * blockSize) + (index % blockSize));
            }
        }

        var batch = new AttentionBatch(blockSize, sequences, [.. rowSeq], [.. rowPos], [.. rowDepth], [.. rowSlot]);
        long slots = (long)blocks * blockSize;
        return new AttentionCase
        {
            Batch = batch,
            Heads = heads,
            KvHeads = kvHeads,
            HeadDim = headDim,
            Bf16 = bf16,
            Slots = slots,
            Q = RandomValues(random, (long)batch.RowCount * heads * headDim, bf16, 1f),
            KeyPool = fillValues ? RandomValues(random, slots * kvHeads * headDim, bf16, 1f) : new float[slots * kvHeads * headDim],
            ValuePool = fillValues ? RandomValues(random, slots * kvHeads * headDim, bf16, 1f) : new float[slots * kvHeads * headDim],
        };

        KvEntries Table(int[] positions)
        {
            var owned = Enumerable.Range(0, (positions.Length + blockSize - 1) / blockSize).Select(_ => free.Dequeue()).ToArray();
            return new KvEntries(owned, positions, positions.Length);
        }
    }

    public static float[] RandomValues(Random random, long count, bool bf16, float scale)
    {
        var values = new float[count];
        for (long i = 0; i < count; i++)
        {
            // Uniform in [-scale*sqrt3, scale*sqrt3]: unit variance, cheap to draw.
            values[i] = Half16.Round(((random.NextSingle() * 2f) - 1f) * 1.7320508f * scale, bf16);
        }

        return values;
    }

    /// <summary>The duo-causal rule applied entry by entry, softmax in double.</summary>
    public double[] Reference()
    {
        int rows = Batch.RowCount, d = HeadDim, groups = Heads / KvHeads;
        double scale = 1.0 / Math.Sqrt(d);
        var output = new double[(long)rows * Heads * d];
        Parallel.For(0, rows, r =>
        {
            var sequence = Batch.Sequences[Batch.RowSequence[r]];
            int position = Batch.RowPosition[r], depth = Batch.RowDepth[r];
            var visible = new List<long>();
            for (int depthIndex = 0; depthIndex < sequence.Depths.Count; depthIndex++)
            {
                var table = sequence.Depths[depthIndex];
                for (int i = 0; i < table.Count; i++)
                {
                    if (table.Positions[i] <= position && depthIndex + 1 <= depth)
                    {
                        visible.Add(Batch.SlotOf(table, i));
                    }
                }
            }

            var scores = new double[visible.Count];
            for (int h = 0; h < Heads; h++)
            {
                int kvh = h / groups;
                long qBase = (((long)r * Heads) + h) * d;
                double max = double.NegativeInfinity;
                for (int e = 0; e < visible.Count; e++)
                {
                    long kBase = ((visible[e] * KvHeads) + kvh) * d;
                    double s = 0;
                    for (int i = 0; i < d; i++)
                    {
                        s += (double)Q[qBase + i] * KeyPool[kBase + i];
                    }

                    scores[e] = s * scale;
                    max = Math.Max(max, scores[e]);
                }

                double sum = 0;
                for (int e = 0; e < visible.Count; e++)
                {
                    scores[e] = Math.Exp(scores[e] - max);
                    sum += scores[e];
                }

                for (int e = 0; e < visible.Count; e++)
                {
                    long vBase = ((visible[e] * KvHeads) + kvh) * d;
                    double p = scores[e] / sum;
                    for (int i = 0; i < d; i++)
                    {
                        output[qBase + i] += p * ValuePool[vBase + i];
                    }
                }
            }
        });
        return output;
    }

    /// <summary>Relative L2 error and largest absolute error of <paramref name="actual"/>; NaN anywhere fails.</summary>
    public static (double RelL2, double MaxAbs) Compare(double[] expected, float[] actual)
    {
        double num = 0, den = 0, max = 0;
        for (long i = 0; i < expected.Length; i++)
        {
            double diff = actual[i] - expected[i];
            if (double.IsNaN(diff))
            {
                return (double.NaN, double.NaN);
            }

            num += diff * diff;
            den += expected[i] * expected[i];
            max = Math.Max(max, Math.Abs(diff));
        }

        return (Math.Sqrt(num / Math.Max(den, 1e-30)), max);
    }

    /// <summary>Random problems of every kind the kernels meet: decode and prefill rows, both depths, GQA groups, block sizes.</summary>
    public static IEnumerable<AttentionCase> RandomSuite(int seed, int count)
    {
        var random = new Random(seed);
        int[] groupChoices = [1, 2, 4, 8];
        int[] blockChoices = [1, 4, 16, 32];
        for (int c = 0; c < count; c++)
        {
            bool bf16 = c % 3 != 2;
            int headDim = c % 2 == 0 ? 128 : 64;
            int groups = groupChoices[random.Next(groupChoices.Length)];
            int kvHeads = random.Next(1, 5);
            int blockSize = blockChoices[random.Next(blockChoices.Length)];
            int sequences = random.Next(1, 6);
            bool longContext = c % 5 == 4;
            var lengths = Enumerable.Range(0, sequences).Select(_ => random.Next(1, longContext ? 3000 : 300)).ToArray();
            double deepShare = new[] { 0.0, 0.06, 0.3, 1.0 }[random.Next(4)];
            yield return Create(random, bf16, kvHeads * groups, kvHeads, headDim, blockSize, lengths, deepShare, (d1, d2) =>
            {
                // Decode (a few rows at the end, either depth) or a prefill chunk (both depths).
                var rows = new List<(int, int)>();
                if (random.NextDouble() < 0.5)
                {
                    rows.Add((1, d1.Length - 1));
                    if (d2.Length > 0 && random.NextDouble() < 0.7)
                    {
                        rows.Add((2, d2.Length - 1 - random.Next(Math.Min(2, d2.Length))));
                    }
                }
                else
                {
                    // A chunk of at most ~200 positions, so the double reference stays quick.
                    int from = Math.Max(0, d1.Length - random.Next(1, 200));
                    for (int i = from; i < d1.Length; i++)
                    {
                        rows.Add((1, i));
                    }

                    for (int i = 0; i < d2.Length; i++)
                    {
                        if (d2[i] >= from || (d2[i] >= from - 100 && random.NextDouble() < 0.3))
                        {
                            rows.Add((2, i));
                        }
                    }
                }

                return rows.OrderBy(_ => random.Next());
            });
        }
    }
}
