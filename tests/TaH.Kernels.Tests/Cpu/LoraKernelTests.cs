using TaH.Kernels.Cpu;

namespace TaH.Kernels.Tests.Cpu;

/// <summary>The LoRA kernel, fp32 and bf16 storage, against an fp64 evaluation of the block-diagonal delta it stands for.</summary>
public unsafe class LoraKernelTests
{
    private const double Unit = 1.0 / (1 << 24);

    // Not a power of two, so a scale applied twice or not at all shows.
    private const float Scaling = 0.75f;

    public static TheoryData<CpuIsa, int, bool> Paths()
    {
        var data = new TheoryData<CpuIsa, int, bool>();
        foreach (var isa in CpuIsas.Supported)
        {
            // Input widths: below one register, odd, and a wide one with a tail.
            foreach (int inFeatures in new[] { 7, 40, 1000 })
            {
                data.Add(isa, inFeatures, false);
                data.Add(isa, inFeatures, true);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AddsTheDeltaToTheSelectedRowsOnly(CpuIsa isa, int inFeatures, bool bf16)
    {
        var random = new Random(inFeatures + (int)isa + (bf16 ? 100 : 0));
        // Three fused parts: q-like with rank 5, one without an adapter, one with rank 3 whose 301
        // outputs straddle a work item's end (256 columns) off a vector boundary and end in a tail.
        int[] outs = [70, 30, 301];
        int?[] ranks = [5, null, 3];
        int outFeatures = outs.Sum(), rank = ranks.Sum(r => r ?? 0);
        var a = Weights(random, rank * inFeatures, bf16);
        var segments = new List<LoraSegment>();
        var packed = new List<float>();
        var logical = new List<float[,]>(); // each segment's B [out, rank], as the packing describes it
        for (int p = 0, start = 0, rankStart = 0; p < outs.Length; start += outs[p], p++)
        {
            if (ranks[p] is int r)
            {
                segments.Add(new LoraSegment(start, outs[p], rankStart, r, packed.Count));
                packed.AddRange(Weights(random, outs[p] * r, bf16));
                logical.Add(Transposed(packed, segments[^1]));
                rankStart += r;
            }
        }

        var b = packed.ToArray();
        using var pool = new CpuWorkerPool(3);
        foreach (int batch in new[] { 1, 2, 5, 17 })
        {
            var x = Values(random, batch * inFeatures);
            var before = Values(random, batch * outFeatures);
            int[] selected = [.. Enumerable.Range(0, batch).Where(i => i % 3 != 1)];
            var y = (float[])before.Clone();
            ushort[] a16 = Bits(a), b16 = Bits(b);
            fixed (float* pa = a, pb = b, px = x, py = y)
            fixed (ushort* qa = a16, qb = b16)
            {
                if (bf16)
                {
                    LoraKernel.Add(qa, rank, inFeatures, [.. segments], qb, Scaling, px, selected, py, outFeatures, isa, pool);
                }
                else
                {
                    LoraKernel.Add(pa, rank, inFeatures, [.. segments], pb, Scaling, px, selected, py, outFeatures, isa, pool);
                }
            }

            for (int row = 0; row < batch; row++)
            {
                for (int o = 0; o < outFeatures; o++)
                {
                    if (!selected.Contains(row))
                    {
                        Assert.Equal(before[(row * outFeatures) + o], y[(row * outFeatures) + o]);
                        continue;
                    }

                    var (exact, bound) = Expected(a, logical, segments, x, before, row, o, inFeatures, outFeatures);
                    Assert.True(Math.Abs(y[(row * outFeatures) + o] - exact) <= bound, $"{isa} bf16={bf16} y[{row},{o}] = {y[(row * outFeatures) + o]}, fp64 {exact} (bound {bound})");
                }
            }
        }
    }

    /// <summary>
    /// The fp64 value of y + s B (A x) at one entry, and a bound on the fp32 kernel's error: each
    /// down entry carries at most gamma_in of its magnitude (sums in any order) and the scaling one
    /// rounding, the B dot product gamma_r of its own, and the final add one rounding.
    /// </summary>
    private static (double Exact, double Bound) Expected(float[] a, List<float[,]> logical, List<LoraSegment> segments, float[] x, float[] y, int row, int o, int inFeatures, int outFeatures)
    {
        double prior = y[(row * outFeatures) + o];
        var segment = segments.Where(s => o >= s.OutStart && o < s.OutStart + s.OutCount).Cast<LoraSegment?>().SingleOrDefault();
        if (segment is not { } s)
        {
            return (prior, 0);
        }

        double gIn = Gamma(inFeatures), gRank = Gamma(s.Rank);
        double exact = 0, magnitude = 0, downError = 0;
        for (int r = 0; r < s.Rank; r++)
        {
            double down = 0, downMagnitude = 0;
            for (int i = 0; i < inFeatures; i++)
            {
                double product = (double)a[((s.RankStart + r) * inFeatures) + i] * x[(row * inFeatures) + i];
                down += product;
                downMagnitude += Math.Abs(product);
            }

            double weight = logical[segments.IndexOf(s)][o - s.OutStart, r];
            double error = Scaling * (gIn + (2 * Unit)) * downMagnitude;
            exact += weight * Scaling * down;
            magnitude += Math.Abs(weight) * ((Scaling * Math.Abs(down)) + error);
            downError += Math.Abs(weight) * error;
        }

        double total = prior + exact;
        double bound = downError + (gRank * magnitude) + (Unit * (Math.Abs(prior) + magnitude) * 2);
        return (total, bound);
    }

    private static double Gamma(int n) => n * Unit / (1 - (n * Unit));

    /// <summary>
    /// B <c>[out, rank]</c> of a segment from its packed elements, as <see cref="LoraSegment"/>
    /// documents them: tiles of 64 outputs, each <c>[rank, width]</c> row-major.
    /// </summary>
    private static float[,] Transposed(List<float> packed, LoraSegment s)
    {
        var b = new float[s.OutCount, s.Rank];
        for (int o = 0; o < s.OutCount; o++)
        {
            int first = o / 64 * 64, width = Math.Min(64, s.OutCount - first);
            for (int r = 0; r < s.Rank; r++)
            {
                b[o, r] = packed[(int)s.BOffset + (first * s.Rank) + (r * width) + (o - first)];
            }
        }

        return b;
    }

    /// <summary>Random weights; for bf16, rounded to values it holds exactly, so fp64 sees what the kernel reads.</summary>
    private static float[] Weights(Random random, int count, bool bf16) =>
        bf16 ? [.. Values(random, count).Select(v => BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(v) & unchecked((int)0xFFFF0000)))] : Values(random, count);

    private static ushort[] Bits(float[] values) => [.. values.Select(v => (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16))];

    private static float[] Values(Random random, int count) =>
        [.. Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() - 0.5))];
}
