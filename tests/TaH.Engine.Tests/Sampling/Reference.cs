using TaH.Engine.Sampling;

namespace TaH.Engine.Tests.Sampling;

/// <summary>
/// A naive, independent statement of what the sampler should do: double precision, full sorts,
/// no partial selection. Tests compare the sampler against it.
/// </summary>
internal static class Reference
{
    /// <summary>The distribution to sample from, token id to probability, after all processing.</summary>
    public static Dictionary<int, double> Distribution(
        float[] logits, SamplingParams p, int[]? prompt = null, int[]? generated = null)
    {
        var l = Penalised(logits, p, prompt ?? [], generated ?? []);
        if (p.Temperature == 0f)
        {
            var best = 0;
            for (var i = 1; i < l.Length; i++)
            {
                if (l[i] > l[best])
                {
                    best = i;
                }
            }

            return new() { [best] = 1.0 };
        }

        IEnumerable<int> order = Enumerable.Range(0, l.Length).OrderByDescending(i => l[i]).ThenBy(i => i);
        if (p.TopK > 0)
        {
            order = order.Take(p.TopK);
        }

        var kept = order.ToList();
        var scaled = kept.Select(i => l[i] / p.Temperature).ToList();
        var max = scaled.Max();
        var exps = scaled.Select(s => Math.Exp(s - max)).ToList();
        var sum = exps.Sum();
        var probs = exps.Select(e => e / sum).ToList();

        if (p.TopP < 1f)
        {
            var count = 0;
            var cumulative = 0.0;
            while (count < kept.Count && (count == 0 || cumulative < p.TopP))
            {
                cumulative += probs[count++];
            }

            kept = kept.Take(count).ToList();
            probs = probs.Take(count).ToList();
        }

        var result = new Dictionary<int, double>();
        var maxProb = probs.Max();
        for (var j = 0; j < kept.Count; j++)
        {
            if (probs[j] >= p.MinP * maxProb)
            {
                result[kept[j]] = probs[j];
            }
        }

        var total = result.Values.Sum();
        foreach (var id in result.Keys.ToList())
        {
            result[id] /= total;
        }

        return result;
    }

    public static double[] Penalised(float[] logits, SamplingParams p, int[] prompt, int[] generated)
    {
        var l = logits.Select(x => (double)x).ToArray();
        if (p.RepetitionPenalty != 1f)
        {
            foreach (var id in prompt.Union(generated))
            {
                l[id] = l[id] > 0 ? l[id] / p.RepetitionPenalty : l[id] * p.RepetitionPenalty;
            }
        }

        foreach (var group in generated.GroupBy(id => id))
        {
            l[group.Key] -= (p.FrequencyPenalty * group.Count()) + p.PresencePenalty;
        }

        return l;
    }

    /// <summary>log-softmax in double.</summary>
    public static double[] LogSoftmax(float[] logits)
    {
        var max = logits.Max();
        var logSum = Math.Log(logits.Sum(x => Math.Exp((double)x - max)));
        return logits.Select(x => x - max - logSum).ToArray();
    }

    /// <summary>Logits whose softmax is the given probabilities.</summary>
    public static float[] LogitsOf(params double[] probabilities) =>
        probabilities.Select(p => (float)Math.Log(p)).ToArray();

    /// <summary>Pseudo-random logits, spread like a language model's (a few dominate).</summary>
    public static float[] RandomLogits(int vocab, ulong seed, float scale = 3f)
    {
        var rng = new Xoshiro256StarStar(seed);
        var logits = new float[vocab];
        for (var i = 0; i < vocab; i++)
        {
            // Box-Muller: a normal draw.
            var u1 = 1.0 - rng.NextDouble();
            var u2 = rng.NextDouble();
            logits[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }

        return logits;
    }

    /// <summary>Counts of each token over many draws (accepting nothing, so penalties stay fixed).</summary>
    public static Dictionary<int, int> Histogram(Sampler sampler, float[] logits, int draws)
    {
        var counts = new Dictionary<int, int>();
        for (var i = 0; i < draws; i++)
        {
            var token = sampler.Sample(logits).TokenId;
            counts[token] = counts.GetValueOrDefault(token) + 1;
        }

        return counts;
    }

    /// <summary>
    /// Asserts the tokens seen are exactly the expected support and their frequencies fit the
    /// expected probabilities: chi-square below mean + 10 standard deviations + 10, which a correct
    /// sampler essentially never exceeds and a wrong distribution over thousands of draws does.
    /// </summary>
    public static void AssertMatches(Dictionary<int, double> expected, Dictionary<int, int> counts)
    {
        Assert.Equal(expected.Keys.Order(), counts.Keys.Order());
        var draws = counts.Values.Sum();
        var chiSquare = expected.Sum(e => Math.Pow(counts[e.Key] - (draws * e.Value), 2) / (draws * e.Value));
        var df = expected.Count - 1;
        Assert.True(chiSquare < df + (10 * Math.Sqrt(2.0 * df)) + 10, $"chi-square {chiSquare:F1} with {df} df");
    }
}
