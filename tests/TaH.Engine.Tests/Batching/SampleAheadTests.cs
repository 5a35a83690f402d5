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
    private readonly TaHModel _model = ModelLoader.Load(Fixtures.TinyCheckpoint("a"));

    public void Dispose() => _model.Dispose();

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

    private ((int Token, int Depth)[] Tokens, long Ahead) Run(Engine.Generation.GenerationRequest request, bool sampleAhead)
    {
        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 128, PrefixCaching = false, SampleAhead = sampleAhead });
        var tokens = engine.Generate(request).Select(e => (e.Token, e.Depth)).ToArray();
        return (tokens, engine.SamplesTakenAhead);
    }
}
