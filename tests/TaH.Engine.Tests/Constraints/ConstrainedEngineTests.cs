using System.Text;
using System.Text.Json.Nodes;
using Json.Schema;
using TaH.Engine.Constraints;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Engine.Tests.Batching;
using TaH.Engine.Tokenization;

namespace TaH.Engine.Tests.Constraints;

/// <summary>Constrained sequences in the engine: preempted and recomputed, forked for n &gt; 1.</summary>
public sealed class ConstrainedEngineTests
{
    private const string Schema = """{"type":"array","items":{"type":"object","properties":{"k":{"type":"string","maxLength":3},"v":{"type":"integer","minimum":0,"maximum":99}},"required":["k","v"],"additionalProperties":false},"minItems":1,"maxItems":3}""";

    private static readonly string Demo = Path.Combine(Fixtures.Root, "models", "tah-arith");
    private static readonly Lazy<TaHModel> Model = new(() => ModelLoader.Load(Demo));
    private static readonly Lazy<ConstraintCompiler> Compiler = new(() => new ConstraintCompiler(TokenVocabulary.Create(TextTokenizer.Load(Demo), 280)));

    private static GenerationRequest Request(long seed, int n = 1) => new()
    {
        PromptTokens = TextTokenizer.Load(Demo).Encode($"{seed}+{seed * 7}="),
        MaxTokens = 60,
        N = n,
        Policy = IterationPolicy.Decider,
        Sampling = new SamplingParams { Temperature = 1f, Seed = seed },
        Constraint = Compiler.Value.JsonSchema(Schema),
    };

    private static void AssertValid(IReadOnlyList<int> tokens)
    {
        var v = Compiler.Value.Vocabulary;
        bool ended = tokens.Count > 0 && Model.Value.EosTokenIds.Contains(tokens[^1]);
        if (!ended)
        {
            Assert.Equal(60, tokens.Count); // only the length limit may leave it unfinished
            return;
        }

        string text = Encoding.UTF8.GetString(tokens.Take(tokens.Count - 1).SelectMany(t => v.Bytes(t).ToArray()).ToArray());
        Assert.True(JsonSchema.FromText(Schema).Evaluate(JsonNode.Parse(text)).IsValid, text);
    }

    [Fact]
    public void APreemptedSequenceContinuesWhereItStopped()
    {
        var requests = Enumerable.Range(1, 5).Select(i => Request(i)).ToList();
        // One request fits alone (2 depths x (2 prompt + 15 output + 2 copy) blocks of 4 = 38); five together do not.
        using var engine = new InferenceEngine(Model.Value, new EngineOptions { KvBlocks = 40, BlockSize = 4, MaxBatchTokens = 64 });
        var together = BatchRunner.Together(engine, requests, [0, 0, 0, 0, 0]);

        Assert.True(engine.Preemptions > 0, "the pool was meant to be too small for all requests at once");
        var ordered = together.OrderBy(kv => kv.Key).Select(kv => kv.Value).ToList();
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(BatchRunner.Alone(Model.Value, requests[i]), ordered[i]);
            AssertValid([.. ordered[i].Select(t => t.Token)]);
        }
    }

    [Fact]
    public void ParallelSamplesEachFollowTheConstraint()
    {
        using var engine = new InferenceEngine(Model.Value, new EngineOptions { KvBlocks = 256 });
        var samples = BatchRunner.Together(engine, [Request(42, n: 4)], [0]);
        Assert.Equal(4, samples.Count);
        foreach (var tokens in samples.Values)
        {
            AssertValid([.. tokens.Select(t => t.Token)]);
        }

        Assert.True(samples.Values.Select(t => string.Join(",", t)).Distinct().Count() > 1, "the samples draw with different seeds");
    }
}
