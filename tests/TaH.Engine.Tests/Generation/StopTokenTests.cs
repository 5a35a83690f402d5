using System.Text.Json.Nodes;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;

namespace TaH.Engine.Tests.Generation;

/// <summary>Which tokens end a sequence: stop_token_ids always, EOS unless ignore_eos (vLLM's stop check).</summary>
public sealed class StopTokenTests : IDisposable
{
    private readonly TaHModel _model = ModelLoader.Load(Fixtures.TinyCheckpoint("a"));

    public void Dispose() => _model.Dispose();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AStopTokenIdEndsTheSequenceEvenWithIgnoreEos(bool ignoreEos)
    {
        // The golden greedy continuation's fifth token, which appears there first at step 4.
        var golden = Fixtures.Golden("a");
        int[] prompt = [.. ((JsonArray)golden["prompt_ids"]!).Select(n => (int)n!)];
        int[] greedy = [.. ((JsonArray)golden["policies"]!["never"]!["greedy_tokens"]!).Select(n => (int)n!)];
        int stop = greedy[4];
        Assert.Equal(4, Array.IndexOf(greedy, stop));

        using var engine = new InferenceEngine(_model, new EngineOptions { KvBlocks = 64 });
        var events = engine.Generate(new GenerationRequest
        {
            PromptTokens = prompt,
            MaxTokens = 12,
            Policy = IterationPolicy.Never,
            Sampling = SamplingParams.Greedy,
            StopTokenIds = [stop],
            IgnoreEos = ignoreEos,
        }).ToList();

        Assert.Equal(greedy[..5], events.Select(e => e.Token));
        Assert.Equal(FinishReason.Stop, events[^1].Finish);
    }
}
