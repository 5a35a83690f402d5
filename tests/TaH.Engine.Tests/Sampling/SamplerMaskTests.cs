using TaH.Engine.Constraints;
using TaH.Engine.Sampling;

namespace TaH.Engine.Tests.Sampling;

/// <summary>A constraint's mask makes tokens impossible, and penalties that raise logits cannot undo it.</summary>
public sealed class SamplerMaskTests
{
    // Token 0 is by far the likeliest, and penalties below would raise it further.
    private static readonly float[] Logits = [10f, 0.5f, 0.2f, -0.3f, 4f, 9f];

    private static TokenMask Allow(int size, params int[] ids)
    {
        var mask = new TokenMask(size);
        foreach (int id in ids)
        {
            mask.Set(id);
        }

        return mask;
    }

    public static TheoryData<SamplingParams> Settings => new()
    {
        new SamplingParams { Temperature = 1f },
        new SamplingParams { Temperature = 1f, RepetitionPenalty = 0.01f },
        new SamplingParams { Temperature = 1f, FrequencyPenalty = -2f, PresencePenalty = -2f },
        new SamplingParams { Temperature = 2f, TopK = 5, TopP = 0.99f },
        new SamplingParams { Temperature = 0.5f, MinP = 0.0001f },
    };

    [Theory]
    [MemberData(nameof(Settings))]
    public void MaskedTokensAreNeverDrawn(SamplingParams settings)
    {
        // Tokens 0 and 4 in the prompt and the output, so every penalty touches them.
        var sampler = new Sampler(settings with { Seed = 3 }, [0, 4]);
        sampler.Accept(0);
        sampler.Accept(4);
        sampler.Accept(4);
        var mask = Allow(5, 1, 2, 3); // 5 is past the mask: never allowed either
        var distribution = sampler.FilteredDistribution(Logits, mask);
        Assert.All(distribution.Where(d => d.Probability > 0), d => Assert.Contains(d.TokenId, new[] { 1, 2, 3 }));
        Assert.Equal(1.0, distribution.Sum(d => d.Probability), 9);
        for (int i = 0; i < 300; i++)
        {
            Assert.Contains(sampler.Sample(Logits, mask).TokenId, new[] { 1, 2, 3 });
        }
    }

    [Fact]
    public void GreedyTakesTheLargestAllowedLogit()
    {
        var sampler = new Sampler(SamplingParams.Greedy with { RepetitionPenalty = 0.01f }, [0]);
        Assert.Equal(4, sampler.Sample(Logits, Allow(6, 1, 2, 3, 4)).TokenId);
        Assert.Equal(0, sampler.Sample(Logits).TokenId);
    }

    [Fact]
    public void TheMaskLeavesTheRawLogprobsAlone()
    {
        // Log-probabilities are the model's, over the whole vocabulary, as without a mask.
        var sampler = new Sampler(new SamplingParams { Temperature = 1f, Seed = 1, Logprobs = 2 }, []);
        var masked = sampler.Sample(Logits, Allow(6, 2));
        var raw = new Sampler(new SamplingParams { Temperature = 0f, Logprobs = 2 }, []).Sample(Logits);
        Assert.Equal(2, masked.TokenId);
        double logZ = Math.Log(Logits.Sum(l => Math.Exp(l)));
        Assert.Equal(0.2 - logZ, masked.Logprob, 4);
        Assert.Equal(raw.TopLogprobs!.Select(t => t.TokenId), masked.TopLogprobs!.Select(t => t.TokenId));
    }

    [Fact]
    public void AnEmptyMaskIsAnErrorNotAGuess()
    {
        var sampler = new Sampler(new SamplingParams { Temperature = 1f }, []);
        Assert.Throws<InvalidOperationException>(() => sampler.Sample(Logits, new TokenMask(6)));
    }
}
