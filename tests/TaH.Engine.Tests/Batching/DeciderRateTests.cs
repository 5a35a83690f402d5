using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.TaH;

namespace TaH.Engine.Tests.Batching;

/// <summary>
/// The benchmark's fixed-rate decider: its extremes must match the policies it sits between, its
/// share must follow the rate, and batching or preemption must not change its choices.
/// </summary>
public sealed class DeciderRateTests : IDisposable
{
    private readonly TaHModel _model = ModelLoader.Load(Fixtures.TinyCheckpoint("a"));

    public void Dispose() => _model.Dispose();

    [Fact]
    public void RateZeroDecodesLikeNeverAndRateOneLikeAlways()
    {
        var prompt = Prompt(new Random(3), 12);
        (int Token, int Depth)[] Run(IterationPolicy policy) => BatchRunner.Alone(_model, BatchRunner.Request(prompt, 40, policy));

        Assert.Equal(Run(IterationPolicy.Never), Run(IterationPolicy.DeciderAtRate(0)));
        Assert.Equal(Run(IterationPolicy.Always), Run(IterationPolicy.DeciderAtRate(1)));
        Assert.NotEqual(Run(IterationPolicy.Never).Select(t => t.Token), Run(IterationPolicy.Always).Select(t => t.Token)); // or the two checks above prove nothing
    }

    [Fact]
    public void ShareOfIteratedTokensFollowsTheRate()
    {
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 512, PrefixCaching = false });
        var random = new Random(5);
        int tokens = 0, deep = 0;
        for (int i = 0; i < 8; i++)
        {
            var request = BatchRunner.Request(Prompt(random, 8), 100, IterationPolicy.DeciderAtRate(0.2), seed: i);
            foreach (var e in engine.Generate(request))
            {
                tokens++;
                deep += e.Depth == 2 ? 1 : 0;
            }
        }

        // 800 draws at p = 0.2: standard deviation 11.3 tokens; 5 sigma either side.
        Assert.InRange(deep, 160 - 57, 160 + 57);
        Assert.Equal(800, tokens);
    }

    [Fact]
    public void BatchedAndPreemptedSequencesDecideAsAlone()
    {
        var random = new Random(11);
        var requests = Enumerable.Range(0, 5)
            .Select(i => BatchRunner.Request(Prompt(random, random.Next(5, 20)), 24, IterationPolicy.DeciderAtRate(0.3), seed: i))
            .ToList();

        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 30, BlockSize = 4, MaxBatchTokens = 64 });
        var together = BatchRunner.Together(engine, requests, [0, 0, 1, 2, 2]);

        Assert.True(engine.Preemptions > 0, "the pool was meant to be too small for all requests at once");
        var ordered = together.OrderBy(kv => kv.Key).Select(kv => kv.Value).ToList();
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(BatchRunner.Alone(_model, requests[i]), ordered[i]);
        }
    }

    [Theory]
    [InlineData(-0.1)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void RatesOutsideTheUnitIntervalAreRefused(double rate) =>
        Assert.Contains("outside [0, 1]", Assert.Throws<ArgumentException>(() => IterationPolicy.DeciderAtRate(rate)).Message);

    private static int[] Prompt(Random random, int length) => [.. Enumerable.Range(0, length).Select(_ => random.Next(3, 512))];
}
