using System.Text.Json.Nodes;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.TaH;

namespace TaH.Engine.Tests.Golden;

/// <summary>
/// The tiny checkpoints against the golden output of an independent reference evaluated in
/// float64: depths and greedy tokens exactly, logits and decider probabilities within the fp32
/// bounds of <see cref="Fp32Tolerance"/>, for every policy, both by step-by-step decoding and by
/// one prefill.
/// </summary>
public class GoldenTests
{
    public static TheoryData<string, string> Cases() => new()
    {
        { "a", "never" }, { "a", "always" }, { "a", "decider" },
        { "b", "never" }, { "b", "always" }, { "b", "decider" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void StepByStepDecodingMatchesGolden(string checkpoint, string policy)
    {
        var golden = Fixtures.Golden(checkpoint);
        var expected = (JsonObject)golden["policies"]![policy]!;
        var prompt = Ints(golden["prompt_ids"]);
        var greedy = Ints(expected["greedy_tokens"]);

        using var model = ModelLoader.Load(Fixtures.TinyCheckpoint(checkpoint));
        var result = Inspection.Run(model, prompt, IterationPolicy.Parse(policy), greedy.Length);

        Assert.Equal(Nullable(expected["threshold"]), result.Threshold);
        AssertPositions((JsonArray)expected["prefill"]!, result.Prefill);
        Assert.Equal(greedy, result.GreedyTokens);
        Assert.Equal(Ints(expected["greedy_depths"]), result.GreedySteps.Select(r => r.Depth).ToArray());
        var stepLogits = (JsonArray)expected["greedy_step_logits"]!;
        var stepProbabilities = (JsonArray)expected["greedy_continue_probs"]!;
        for (int t = 0; t < greedy.Length; t++)
        {
            AssertClose(Floats(stepLogits[t]), result.GreedySteps[t].FinalLogits, result.GreedySteps[t].Depth, $"greedy step {t}");
            AssertProbability(Nullable(stepProbabilities[t]), result.GreedySteps[t].ContinueProbability, $"greedy step {t}");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void OnePrefillOfPromptAndGreedyTokensMatchesGolden(string checkpoint, string policy)
    {
        var golden = Fixtures.Golden(checkpoint);
        var expected = (JsonObject)golden["policies"]![policy]!;
        var prompt = Ints(golden["prompt_ids"]);
        var greedy = Ints(expected["greedy_tokens"]);

        using var model = ModelLoader.Load(Fixtures.TinyCheckpoint(checkpoint));
        var result = Inspection.Run(model, [.. prompt, .. greedy], IterationPolicy.Parse(policy), 0);

        AssertPositions((JsonArray)expected["prefill"]!, result.Prefill[..prompt.Length]);
        var tail = result.Prefill[prompt.Length..];
        Assert.Equal(Ints(expected["greedy_depths"]), tail.Select(r => r.Depth).ToArray());
        for (int t = 0; t < greedy.Length; t++)
        {
            AssertClose(Floats(expected["greedy_step_logits"]![t]), tail[t].FinalLogits, tail[t].Depth, $"position {prompt.Length + t}");
        }
    }

    [Theory]
    [InlineData("a")]
    [InlineData("b")]
    public void NeverEqualsThePlainQwen3Checkpoint(string checkpoint)
    {
        // The same weights without tah_config.json, lora/ and iter_decider.bin load as plain Qwen3,
        // and run the same operations on the same rows in the same order: equal to the bit.
        using var plain = new TempDirectory();
        string source = Fixtures.TinyCheckpoint(checkpoint);
        foreach (string file in Directory.GetFiles(source).Where(f => f.EndsWith(".json", StringComparison.Ordinal) || f.EndsWith(".safetensors", StringComparison.Ordinal)))
        {
            if (Path.GetFileName(file) != "tah_config.json")
            {
                File.Copy(file, plain.File(Path.GetFileName(file)));
            }
        }

        var golden = Fixtures.Golden(checkpoint);
        var prompt = Ints(golden["prompt_ids"]);
        using var baseModel = ModelLoader.Load(plain.Path);
        using var tahModel = ModelLoader.Load(source);
        Assert.Equal(1, baseModel.MaxDepth);
        Assert.Equal(2, tahModel.MaxDepth);

        var fromBase = Inspection.Run(baseModel, prompt, IterationPolicy.Never, 8);
        var fromTah = Inspection.Run(tahModel, prompt, IterationPolicy.Never, 8);
        Assert.Equal(fromTah.GreedyTokens, fromBase.GreedyTokens);
        for (int p = 0; p < prompt.Length; p++)
        {
            Assert.Equal(fromTah.Prefill[p].FinalLogits, fromBase.Prefill[p].FinalLogits);
        }

        AssertPositions((JsonArray)golden["policies"]!["never"]!["prefill"]!, fromBase.Prefill);
        Assert.NotNull(baseModel.Supports(IterationPolicy.Decider));
    }

    private static void AssertPositions(JsonArray expected, PositionRecord[] actual)
    {
        Assert.Equal(expected.Count, actual.Length);
        Assert.Equal(expected.Select(e => (int)e!["depth"]!).ToArray(), actual.Select(r => r.Depth).ToArray());
        for (int p = 0; p < expected.Count; p++)
        {
            AssertClose(Floats(expected[p]!["final_logits"]), actual[p].FinalLogits, actual[p].Depth, $"prefill position {p}");
            AssertProbability(Nullable(expected[p]!["continue_prob"]), actual[p].ContinueProbability, $"prefill position {p}");
        }
    }

    private static void AssertClose(double[] expected, float[] actual, int depth, string where)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(worst <= Fp32Tolerance.Logit, $"{where} (depth {depth}): logits differ from float64 by up to {worst:E2}");
    }

    private static void AssertProbability(double? expected, double? actual, string where)
    {
        Assert.Equal(expected is null, actual is null);
        if (expected is { } e)
        {
            Assert.True(Math.Abs(e - actual!.Value) <= Fp32Tolerance.Probability, $"{where}: continue probability {actual} vs {e}");
        }
    }

    private static int[] Ints(JsonNode? node) => [.. ((JsonArray)node!).Select(n => (int)n!)];

    private static double[] Floats(JsonNode? node) => [.. ((JsonArray)node!).Select(n => (double)n!)];

    private static double? Nullable(JsonNode? node) => node is null ? null : (double)node;
}
