using TaH.Engine.Sampling;

namespace TaH.Engine.Tests.Sampling;

public class SamplerFilterTests
{
    // Softmax of these logits is P = [0.02, 0.30, 0.08, 0.25, 0.15, 0.20]; sorted: 1, 3, 5, 4, 2, 0.
    private static readonly float[] Logits = Reference.LogitsOf(0.02, 0.30, 0.08, 0.25, 0.15, 0.20);

    private const int Draws = 20_000;

    // Expected supports and renormalised probabilities worked out by hand from P.
    public static TheoryData<SamplingParams, int[], double[]> HandCases => new()
    {
        // Top 3 by probability, renormalised over 0.75.
        { new() { TopK = 3 }, [1, 3, 5], [0.30 / 0.75, 0.25 / 0.75, 0.20 / 0.75] },
        // top_k larger than the vocabulary keeps everything.
        { new() { TopK = 10 }, [0, 1, 2, 3, 4, 5], [0.02, 0.30, 0.08, 0.25, 0.15, 0.20] },
        // 0.30 + 0.25 = 0.55 reaches 0.5.
        { new() { TopP = 0.5f }, [1, 3], [0.30 / 0.55, 0.25 / 0.55] },
        // 0.55 < 0.6, so 0.20 joins: 0.75.
        { new() { TopP = 0.6f }, [1, 3, 5], [0.30 / 0.75, 0.25 / 0.75, 0.20 / 0.75] },
        // The most probable token alone exceeds 0.1; at least one token is always kept.
        { new() { TopP = 0.1f }, [1], [1.0] },
        // Threshold 0.6 * 0.30 = 0.18.
        { new() { MinP = 0.6f }, [1, 3, 5], [0.30 / 0.75, 0.25 / 0.75, 0.20 / 0.75] },
        // Threshold 0.4 * 0.30 = 0.12.
        { new() { MinP = 0.4f }, [1, 3, 4, 5], [0.30 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0.20 / 0.9] },
        // Top 4 renormalised over 0.9: 1/3, 5/18, 4/18, 3/18; cumulative 1/3, 11/18 < 0.7, 15/18.
        { new() { TopK = 4, TopP = 0.7f }, [1, 3, 5], [0.30 / 0.75, 0.25 / 0.75, 0.20 / 0.75] },
        // ... then min_p 0.7 drops token 5 (0.20 / 0.30 = 0.67 < 0.7).
        { new() { TopK = 4, TopP = 0.7f, MinP = 0.7f }, [1, 3], [0.30 / 0.55, 0.25 / 0.55] },
        // Order matters: top-p 0.6 keeps {1, 3, 5}, min-p 0.55 (threshold 0.165) keeps them all.
        // Min-p first would keep {1, 3, 5} renormalised to 0.4, 0.33, 0.27 and top-p 0.6 then {1, 3}.
        { new() { TopP = 0.6f, MinP = 0.55f }, [1, 3, 5], [0.30 / 0.75, 0.25 / 0.75, 0.20 / 0.75] },
        // Temperature 0.5 squares the probabilities before top-k: 0.09, 0.0625, 0.04 over 0.1925.
        { new() { Temperature = 0.5f, TopK = 3 }, [1, 3, 5], [0.09 / 0.1925, 0.0625 / 0.1925, 0.04 / 0.1925] },
    };

    [Theory]
    [MemberData(nameof(HandCases))]
    public void FiltersKeepTheHandComputedSetWithRenormalisedFrequencies(
        SamplingParams parameters, int[] support, double[] probabilities)
    {
        var expected = support.Zip(probabilities).ToDictionary(x => x.First, x => x.Second);
        var sampler = new Sampler(parameters with { Seed = 20240611 }, []);

        var counts = Reference.Histogram(sampler, Logits, Draws);

        Reference.AssertMatches(expected, counts);
        // The same expectation from the naive reference pipeline, as a check on the hand arithmetic.
        var reference = Reference.Distribution(Logits, parameters);
        Assert.Equal(support, reference.Keys.Order());
        foreach (var (id, p) in expected)
        {
            Assert.Equal(p, reference[id], 1e-6);
        }
    }

    [Fact]
    public void TemperatureZeroIsArgmaxAndTinyTemperatureSamplesAmongTiedMaxima()
    {
        float[] clear = [0.5f, 3f, 2.9f, -1f];
        float[] tied = [3f, 1f, 3f, 0f];
        var greedy = new Sampler(SamplingParams.Greedy, []);
        var tiny = new Sampler(new SamplingParams { Temperature = 1e-3f, Seed = 5 }, []);

        Assert.Equal(new Dictionary<int, int> { [1] = 2000 }, Reference.Histogram(greedy, clear, 2000));
        Assert.Equal(new Dictionary<int, int> { [1] = 2000 }, Reference.Histogram(tiny, clear, 2000));
        Assert.Equal(new Dictionary<int, int> { [0] = 2000 }, Reference.Histogram(greedy, tied, 2000));
        Reference.AssertMatches(new() { [0] = 0.5, [2] = 0.5 }, Reference.Histogram(tiny, tied, 2000));
    }

    [Fact]
    public void TopKOneEqualsGreedy()
    {
        var topOne = new Sampler(new SamplingParams { TopK = 1, Temperature = 2f, Seed = 3 }, []);
        var greedy = new Sampler(SamplingParams.Greedy, []);
        for (ulong trial = 0; trial < 100; trial++)
        {
            var logits = Reference.RandomLogits(2000, trial);
            var argmax = Array.IndexOf(logits, logits.Max());
            Assert.Equal(argmax, topOne.Sample(logits).TokenId);
            Assert.Equal(argmax, greedy.Sample(logits).TokenId);
        }

        // A tie at the maximum: both take the lower id.
        float[] tied = [5f, 7f, 7f, 1f];
        Assert.Equal(new Dictionary<int, int> { [1] = 500 }, Reference.Histogram(topOne, tied, 500));
        Assert.Equal(1, greedy.Sample(tied).TokenId);
    }

    [Fact]
    public void GreedyTiesGoToTheLowestId()
    {
        var sampler = new Sampler(SamplingParams.Greedy, []);
        Assert.Equal(1, sampler.Sample([1f, 5f, 2f, 5f, 5f]).TokenId);
        Assert.Equal(0, sampler.Sample([-3f, -3f, -3f]).TokenId);
        Assert.Equal(3, sampler.Sample([-1f, 0f, 1f, 4f]).TokenId);
    }

    [Fact]
    public void CombinedPipelineMatchesTheReferenceInDistributionAndFrequencies()
    {
        var logits = Reference.RandomLogits(64, 99, scale: 2f);
        int[] prompt = [3, 7, 7, 11];
        int[] generated = [5, 5, 9, 3];
        var parameters = new SamplingParams
        {
            Temperature = 0.8f,
            TopK = 20,
            TopP = 0.9f,
            MinP = 0.05f,
            RepetitionPenalty = 1.3f,
            FrequencyPenalty = 0.4f,
            PresencePenalty = 0.3f,
            Seed = 77,
        };
        var sampler = new Sampler(parameters, prompt);
        foreach (var token in generated)
        {
            sampler.Accept(token);
        }

        var expected = Reference.Distribution(logits, parameters, prompt, generated);
        AssertSameDistribution(expected, sampler.FilteredDistribution(logits));
        Reference.AssertMatches(expected, Reference.Histogram(sampler, logits, 50_000));
    }

    public static TheoryData<SamplingParams> LargeVocabularyCases => new()
    {
        new() { TopP = 0.9f },
        new() { TopK = 40 },
        new() { TopK = 1000, TopP = 0.95f },
        new() { TopK = 50, TopP = 0.8f, MinP = 0.05f, Temperature = 0.7f },
        new() { MinP = 0.1f },
        new() { Temperature = 1.5f, TopP = 0.5f },
        new() { TopP = 0.999f },
        new() { TopK = 151_935 },
    };

    [Theory]
    [MemberData(nameof(LargeVocabularyCases))]
    public void PartialSelectionOverAFullVocabularyMatchesAFullSort(SamplingParams parameters)
    {
        var logits = Reference.RandomLogits(151_936, 2024);
        var sampler = new Sampler(parameters with { Seed = 1 }, []);

        var expected = Reference.Distribution(logits, parameters);
        AssertSameDistribution(expected, sampler.FilteredDistribution(logits));
        var token = sampler.Sample(logits).TokenId;
        Assert.Contains(token, expected.Keys);
    }

    [Fact]
    public void EqualLogitsAcrossAFullVocabularyKeepTheLowestIds()
    {
        // Every token ties; top-k and top-p must still keep a set of the right size, lowest ids first.
        var logits = new float[151_936];
        var topK = new Sampler(new SamplingParams { TopK = 7 }, []);
        Assert.Equal(Enumerable.Range(0, 7), topK.FilteredDistribution(logits).Select(x => x.TokenId));

        // 0.25 of the mass is exactly 37984 tokens (sums of ones are exact).
        var topP = new Sampler(new SamplingParams { TopP = 0.25f }, []);
        var kept = topP.FilteredDistribution(logits).Select(x => x.TokenId).ToArray();
        Assert.Equal(37_984, kept.Length);
        Assert.Equal(Enumerable.Range(0, kept.Length), kept);

        // 64 equal tokens, top_p 33/64: exactly 33 tokens reach it.
        var small = new Sampler(new SamplingParams { TopP = 33 / 64f }, []);
        Assert.Equal(Enumerable.Range(0, 33), small.FilteredDistribution(new float[64]).Select(x => x.TokenId));
    }

    [Fact]
    public void RandomSettingsOverRandomVocabulariesMatchTheReference()
    {
        var rng = new Xoshiro256StarStar(31337);
        for (ulong trial = 0; trial < 300; trial++)
        {
            var vocab = 1 + (int)(rng.NextUInt64() % 400);
            var logits = Reference.RandomLogits(vocab, trial, scale: (float)(0.5 + (3 * rng.NextDouble())));
            var parameters = new SamplingParams
            {
                Temperature = (float)(0.2 + (1.8 * rng.NextDouble())),
                TopK = rng.NextDouble() < 0.5 ? 0 : 1 + (int)(rng.NextUInt64() % (ulong)(vocab + 5)),
                TopP = rng.NextDouble() < 0.3 ? 1f : (float)(0.05 + (0.95 * rng.NextDouble())),
                MinP = rng.NextDouble() < 0.5 ? 0f : (float)(0.3 * rng.NextDouble()),
            };

            var sampler = new Sampler(parameters, []);
            AssertSameDistribution(Reference.Distribution(logits, parameters), sampler.FilteredDistribution(logits));
        }
    }

    private static void AssertSameDistribution(Dictionary<int, double> expected, (int TokenId, double Probability)[] actual)
    {
        Assert.Equal(expected.Keys.Order(), actual.Select(x => x.TokenId));
        foreach (var (id, p) in actual)
        {
            Assert.Equal(expected[id], p, 1e-6);
        }
    }
}
