using TaH.Kernels.Cuda;

namespace TaH.Kernels.Tests;

/// <summary>The fused kernels against host computations of the same formulas, on the tests' own buffers.</summary>
internal static class FusedChecks
{
    public sealed record Result(string Name, double Error, double Limit, string Detail)
    {
        public bool Passed => Error <= Limit;
    }

    /// <param name="quick">Small shapes only (for runs under compute-sanitizer).</param>
    public static IEnumerable<Result> All(CudaDevice device, int seed, bool quick = false)
    {
        var random = new Random(seed);
        foreach (bool bf16 in new[] { true, false })
        {
            var module = device.Module("fused.cu", KernelConfigurations.Fused(bf16 ? "bf16" : "fp16", 128));
            yield return RmsNorm(module, random, bf16, 9, 2048);
            yield return RmsNorm(module, random, bf16, 5, 128);
            yield return QkNormRope(module, random, bf16, 6, 16, 8);
            yield return SoftMix(module, random, bf16, 4, 2048, 100, 128);
        }

        var sampling = device.Module("fused.cu", KernelConfigurations.Fused("bf16", 128));
        if (!quick)
        {
            yield return Sampling(sampling, random, 24, 151936);
        }

        yield return Sampling(sampling, random, quick ? 8 : 24, 1000);
    }

    private static Result RmsNorm(CudaModule module, Random random, bool bf16, int rows, int n)
    {
        var x = AttentionCase.RandomValues(random, (long)rows * n, bf16, 3f);
        var w = AttentionCase.RandomValues(random, n, bf16, 1f);
        using var dx = DeviceBuffer.From<ushort>(AttentionCase.Bits(x, bf16));
        using var dw = DeviceBuffer.From<ushort>(AttentionCase.Bits(w, bf16));
        using var dy = DeviceBuffer.Allocate((long)rows * n * 2);
        dy.Fill(0xff);
        const float eps = 1e-6f;
        module["rms_norm"].Launch(((uint)rows, 1, 1), 128, 0, dx.Pointer, dw.Pointer, dy.Pointer, n, eps);
        CudaDevice.Synchronize();
        var y = RawAttention.Read(dy, (long)rows * n, bf16);
        double worst = 0;
        for (int r = 0; r < rows; r++)
        {
            double ss = 0;
            for (int i = 0; i < n; i++)
            {
                ss += (double)x[(r * n) + i] * x[(r * n) + i];
            }

            float inv = (float)(1.0 / Math.Sqrt((ss / n) + eps));
            for (int i = 0; i < n; i++)
            {
                float expected = Half16.Round(w[i] * Half16.Round(x[(r * n) + i] * inv, bf16), bf16);
                worst = Math.Max(worst, Ulps(expected, y[(r * n) + i], bf16));
            }
        }

        return new Result($"rms_norm {(bf16 ? "bf16" : "fp16")} [{rows}x{n}]", worst, 2, "largest difference in units of the last place");
    }

    private static Result QkNormRope(CudaModule module, Random random, bool bf16, int rows, int heads, int kvHeads)
    {
        const int d = 128;
        int all = heads + (2 * kvHeads);
        var qkv = AttentionCase.RandomValues(random, (long)rows * all * d, bf16, 2f);
        var qw = AttentionCase.RandomValues(random, d, bf16, 1f);
        var kw = AttentionCase.RandomValues(random, d, bf16, 1f);
        var cos = new float[rows * d];
        var sin = new float[rows * d];
        for (int r = 0; r < rows; r++)
        {
            int position = random.Next(40000);
            for (int i = 0; i < d; i++)
            {
                float invFreq = (float)(1.0 / Math.Pow(1e6, (double)(2 * (i % (d / 2))) / d));
                float angle = position * invFreq;
                cos[(r * d) + i] = Half16.Round(MathF.Cos(angle), bf16);
                sin[(r * d) + i] = Half16.Round(MathF.Sin(angle), bf16);
            }
        }

        using var dqkv = DeviceBuffer.From<ushort>(AttentionCase.Bits(qkv, bf16));
        using var dqw = DeviceBuffer.From<ushort>(AttentionCase.Bits(qw, bf16));
        using var dkw = DeviceBuffer.From<ushort>(AttentionCase.Bits(kw, bf16));
        using var dcos = DeviceBuffer.From<ushort>(AttentionCase.Bits(cos, bf16));
        using var dsin = DeviceBuffer.From<ushort>(AttentionCase.Bits(sin, bf16));
        using var dq = DeviceBuffer.Allocate((long)rows * heads * d * 2);
        using var dk = DeviceBuffer.Allocate((long)rows * kvHeads * d * 2);
        using var dv = DeviceBuffer.Allocate((long)rows * kvHeads * d * 2);
        dq.Fill(0xff);
        dk.Fill(0xff);
        dv.Fill(0xff);
        const float eps = 1e-6f;
        long warps = (long)rows * all;
        module["qk_norm_rope"].Launch(((uint)((warps + 7) / 8), 1, 1), 256, 0,
            dqkv.Pointer, dqw.Pointer, dkw.Pointer, dcos.Pointer, dsin.Pointer, dq.Pointer, dk.Pointer, dv.Pointer, rows, heads, kvHeads, eps);
        CudaDevice.Synchronize();
        var q = RawAttention.Read(dq, (long)rows * heads * d, bf16);
        var k = RawAttention.Read(dk, (long)rows * kvHeads * d, bf16);
        var v = RawAttention.Read(dv, (long)rows * kvHeads * d, bf16);
        double worst = 0;
        for (int r = 0; r < rows; r++)
        {
            for (int h = 0; h < all; h++)
            {
                long src = (((long)r * all) + h) * d;
                if (h >= heads + kvHeads)
                {
                    long dst = (((long)r * kvHeads) + h - heads - kvHeads) * d;
                    for (int i = 0; i < d; i++)
                    {
                        worst = Math.Max(worst, qkv[src + i] == v[dst + i] ? 0 : double.PositiveInfinity);
                    }

                    continue;
                }

                var w = h < heads ? qw : kw;
                double ss = 0;
                for (int i = 0; i < d; i++)
                {
                    ss += (double)qkv[src + i] * qkv[src + i];
                }

                float inv = (float)(1.0 / Math.Sqrt((ss / d) + eps));
                var normed = new float[d];
                for (int i = 0; i < d; i++)
                {
                    normed[i] = Half16.Round(w[i] * Half16.Round(qkv[src + i] * inv, bf16), bf16);
                }

                var output = h < heads ? q : k;
                long o = h < heads ? (((long)r * heads) + h) * d : (((long)r * kvHeads) + h - heads) * d;
                for (int i = 0; i < d; i++)
                {
                    float rotated = i < d / 2 ? -normed[i + (d / 2)] : normed[i - (d / 2)];
                    float expected = Half16.Round(Half16.Round(normed[i] * cos[(r * d) + i], bf16) + Half16.Round(rotated * sin[(r * d) + i], bf16), bf16);
                    worst = Math.Max(worst, Ulps(expected, output[o + i], bf16));
                }
            }
        }

        return new Result($"qk_norm_rope {(bf16 ? "bf16" : "fp16")} rows={rows} H={heads}/{kvHeads}", worst, 2, "largest difference in units of the last place (v must be copied exactly)");
    }

    private static Result SoftMix(CudaModule module, Random random, bool bf16, int rows, int hidden, int topK, int stride)
    {
        int vocab = 5000;
        var embed = AttentionCase.RandomValues(random, (long)vocab * hidden, bf16, 0.05f);
        var values = new float[rows * stride];
        var ids = new long[rows * stride];
        for (int r = 0; r < rows; r++)
        {
            for (int j = 0; j < stride; j++)
            {
                values[(r * stride) + j] = (random.NextSingle() * 10f) - 5f;
                ids[(r * stride) + j] = random.Next(vocab);
            }
        }

        using var dv = DeviceBuffer.From<float>(values);
        using var di = DeviceBuffer.From<long>(ids);
        using var de = DeviceBuffer.From<ushort>(AttentionCase.Bits(embed, bf16));
        using var dout = DeviceBuffer.Allocate((long)rows * hidden * 2);
        dout.Fill(0xff);
        module["soft_topk_mix"].Launch(((uint)rows, 1, 1), 256, (uint)(topK * 4), dv.Pointer, di.Pointer, de.Pointer, dout.Pointer, topK, stride, hidden);
        CudaDevice.Synchronize();
        var actual = RawAttention.Read(dout, (long)rows * hidden, bf16);
        var expected = new double[rows * hidden];
        for (int r = 0; r < rows; r++)
        {
            double max = Enumerable.Range(0, topK).Max(j => (double)values[(r * stride) + j]);
            var weights = Enumerable.Range(0, topK).Select(j => Math.Exp(values[(r * stride) + j] - max)).ToArray();
            double sum = weights.Sum();
            for (int j = 0; j < topK; j++)
            {
                long e = ids[(r * stride) + j] * hidden;
                for (int i = 0; i < hidden; i++)
                {
                    expected[(r * hidden) + i] += weights[j] / sum * embed[e + i];
                }
            }
        }

        var (rel, _) = AttentionCase.Compare(expected, actual);
        return new Result($"soft_topk_mix {(bf16 ? "bf16" : "fp16")} rows={rows} hidden={hidden} k={topK}", rel, 8e-3, "relative L2 error");
    }

    private static Result Sampling(CudaModule module, Random random, int rows, int vocab)
    {
        var logits = new float[rows * vocab];
        for (int i = 0; i < logits.Length; i++)
        {
            logits[i] = (float)(random.NextDouble() * 12.0) - 6f;
        }

        var temperature = new float[rows];
        var topK = new int[rows];
        var topP = new float[rows];
        var uniform = new float[rows];
        float[] temps = [0f, 0.6f, 1f, 1.3f];
        int[] ks = [0, 1, 20, 50];
        float[] ps = [1f, 0.95f, 0.8f, 0.3f];
        for (int r = 0; r < rows; r++)
        {
            temperature[r] = temps[r % 4];
            topK[r] = ks[(r / 4) % 4];
            topP[r] = ps[random.Next(4)];
            uniform[r] = random.NextSingle();
        }

        using var dl = DeviceBuffer.From<float>(logits);
        using var dt = DeviceBuffer.From<float>(temperature);
        using var dk = DeviceBuffer.From<int>(topK);
        using var dp = DeviceBuffer.From<float>(topP);
        using var du = DeviceBuffer.From<float>(uniform);
        using var dout = DeviceBuffer.Allocate(rows * 8L);
        dout.Fill(0xff);
        module["sample_top_k_top_p"].Launch(((uint)rows, 1, 1), 1024, 0, dl.Pointer, vocab, dt.Pointer, dk.Pointer, dp.Pointer, du.Pointer, dout.Pointer);
        CudaDevice.Synchronize();
        var picked = dout.Download<long>(rows);
        int mismatches = 0, ambiguous = 0;
        for (int r = 0; r < rows; r++)
        {
            var (expected, nearBoundary) = ReferenceSample(logits.AsSpan(r * vocab, vocab), temperature[r], topK[r], topP[r], uniform[r]);
            if (picked[r] != expected)
            {
                if (nearBoundary)
                {
                    ambiguous++;
                }
                else
                {
                    mismatches++;
                }
            }
        }

        return new Result($"sample_top_k_top_p rows={rows} vocab={vocab}", mismatches, 0, $"rows whose token differs from the host reference ({ambiguous} more within rounding of a boundary)");
    }

    /// <summary>The same rule in double: temperature, top-k (ties kept), top-p over the top-k mass, draw in index order.</summary>
    public static (long Token, bool NearBoundary) ReferenceSample(ReadOnlySpan<float> logits, float temperature, int topK, float topP, float uniform)
    {
        int vocab = logits.Length;
        int best = 0;
        for (int i = 1; i < vocab; i++)
        {
            if (logits[i] > logits[best])
            {
                best = i;
            }
        }

        if (temperature <= 0)
        {
            return (best, false);
        }

        var sorted = logits.ToArray();
        Array.Sort(sorted);
        Array.Reverse(sorted);
        float kth = topK > 0 && topK < vocab ? sorted[topK - 1] : float.NegativeInfinity;
        double max = logits[best];
        double Weight(float v) => Math.Exp((v - max) / temperature);
        double z = 0;
        foreach (float v in sorted)
        {
            if (v >= kth)
            {
                z += Weight(v);
            }
        }

        float cut = kth;
        if (topP < 1)
        {
            // The largest value t (among the kept) whose mass of values >= t reaches p z.
            double mass = 0;
            for (int i = 0; i < sorted.Length && sorted[i] >= kth; i++)
            {
                mass += Weight(sorted[i]);
                bool lastOfTies = i + 1 >= sorted.Length || sorted[i + 1] != sorted[i];
                if (lastOfTies && mass >= topP * z)
                {
                    cut = sorted[i];
                    break;
                }
            }
        }

        double total = 0;
        for (int i = 0; i < vocab; i++)
        {
            if (logits[i] >= cut)
            {
                total += Weight(logits[i]);
            }
        }

        double target = uniform * total, run = 0;
        long pick = -1;
        bool near = false;
        for (int i = 0; i < vocab; i++)
        {
            if (logits[i] >= cut)
            {
                run += Weight(logits[i]);
                pick = i;
                if (target < run)
                {
                    near = Math.Abs(run - target) < 1e-4 * total || Math.Abs(run - Weight(logits[i]) - target) < 1e-4 * total;
                    break;
                }
            }
        }

        return (pick, near);
    }

    private static double Ulps(float expected, float actual, bool bf16)
    {
        if (float.IsNaN(actual))
        {
            return double.PositiveInfinity;
        }

        double ulp = Math.Max(Math.Abs(expected), 1e-3) * (bf16 ? 1.0 / 128 : 1.0 / 1024);
        return Math.Abs(expected - actual) / ulp;
    }
}
