using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.TaH;

namespace TaH.Engine.Tests.Batching;

/// <summary>
/// A token sampled while the decider judges its position must be the one sampling after the
/// decision draws: seeded, with positions that go deeper (whose samples are undone), the tokens
/// and depths are those of an engine that samples afterwards.
/// </summary>
public sealed class SampleAheadTests : IDisposable
{
    // q8_0: the decider on the CPU kernels, where the engine samples ahead.
    private readonly TaHModel _model = ModelLoader.Load(Fixtures.TinyCheckpoint("a"), new ModelOptions { Weights = WeightFormat.Q8_0 });

    private readonly TaHModel _fp32 = ModelLoader.Load(Fixtures.TinyCheckpoint("a"));

    public void Dispose()
    {
        _model.Dispose();
        _fp32.Dispose();
    }

    public static TheoryData<string> Policies() => ["decider", "rate"];

    [Theory]
    [MemberData(nameof(Policies))]
    public void SamplingAheadDrawsTheTokensSamplingAfterwardsDraws(string policy)
    {
        var chosen = policy == "rate" ? IterationPolicy.DeciderAtRate(0.4) : IterationPolicy.Decider;
        var random = new Random(11);
        for (int seed = 0; seed < 4; seed++)
        {
            var request = BatchRunner.Request([.. Enumerable.Range(0, 9).Select(_ => random.Next(_model.Config.VocabSize))], 40, chosen, seed);
            var (ahead, taken) = Run(request, sampleAhead: true);
            var (after, none) = Run(request, sampleAhead: false);

            Assert.Equal(after, ahead);
            Assert.Equal(0, none);
            Assert.True(taken >= 39, $"only {taken} of 40 tokens were sampled ahead");
            if (policy == "rate")
            {
                Assert.Contains(ahead, t => t.Depth == 2); // samples taken ahead were undone
            }
        }
    }

    [Fact]
    public void WithTorchsDeciderNothingIsSampledAhead()
    {
        // fp32 runs the decider on torch's OpenMP threads, which a lent worker would contend with.
        var request = BatchRunner.Request([1, 2, 3], 8, IterationPolicy.Decider, 1);
        Assert.Equal(0, Run(request, sampleAhead: true, _fp32).Ahead);
    }

    private ((int Token, int Depth)[] Tokens, long Ahead) Run(GenerationRequest request, bool sampleAhead, TaHModel? model = null)
    {
        using var engine = new InferenceEngine(model ?? _model, new EngineOptions { KvBlocks = 128, PrefixCaching = false, SampleAhead = sampleAhead });
        var tokens = engine.Generate(request).Select(e => (e.Token, e.Depth)).ToArray();
        return (tokens, engine.SamplesTakenAhead);
    }
}
