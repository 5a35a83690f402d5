using System.Text.Json.Nodes;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.TaH;
using TaH.Engine.Tests;
using TaH.Training.Model;
using static TorchSharp.torch;

namespace TaH.Training.Tests;

/// <summary>
/// The trainable forward (eval mode) computes what inference computes: against the reference
/// implementation's float64 golden outputs for the fixture checkpoints, and against the engine for
/// a checkpoint this trainer writes. Same depths, same final logits within the fp32 bounds of
/// <see cref="Fp32Tolerance"/>, for every policy.
/// </summary>
public class ForwardAgreementTests
{
    public static TheoryData<string, string> GoldenCases() => new()
    {
        { "a", "never" }, { "a", "always" }, { "a", "decider" },
        { "b", "never" }, { "b", "always" }, { "b", "decider" },
    };

    [Theory]
    [MemberData(nameof(GoldenCases))]
    public void TrainableForwardMatchesReferenceGolden(string checkpoint, string policy)
    {
        var golden = JsonNode.Parse(File.ReadAllText(Helpers.Fixture($"tah-tiny/{checkpoint}.golden64.json")))!;
        var expected = golden["policies"]![policy]!;
        long[] prompt = [.. golden["prompt_ids"]!.AsArray().Select(n => n!.GetValue<long>())];
        var prefill = expected["prefill"]!.AsArray();

        using var model = TaHCheckpoint.Load(Helpers.Fixture($"tah-tiny/{checkpoint}"));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (depths, logits, probabilities) = Run(model, prompt, policy, expected["threshold"]?.GetValue<double>());

        for (int p = 0; p < prompt.Length; p++)
        {
            Assert.Equal(prefill[p]!["depth"]!.GetValue<int>(), depths[p]);
            double[] want = [.. prefill[p]!["final_logits"]!.AsArray().Select(n => n!.GetValue<double>())];
            AssertClose(want, logits[p], Fp32Tolerance.Logit, $"position {p}");
            if (prefill[p]!["continue_prob"] is JsonValue prob)
            {
                Assert.InRange(probabilities![p], prob.GetValue<double>() - Fp32Tolerance.Probability, prob.GetValue<double>() + Fp32Tolerance.Probability);
            }
        }
    }

    [Theory]
    [InlineData("never")]
    [InlineData("always")]
    [InlineData("decider")]
    public void EngineRunsTheExportedCheckpointAsTheTrainerDoes(string policy)
    {
        using var dir = new TempDirectory();
        long[] prompt = [5, 17, 3, 40, 41, 8, 9, 33, 2, 25, 11, 60, 7, 1, 30, 22];
        using (var trained = Helpers.TinyTaH(vocab: 64))
        {
            // A threshold halfway between two of the decider's probabilities on this prompt: some
            // positions iterate, some do not, none sits on the edge.
            using (no_grad())
            {
                using var scope = NewDisposeScope();
                using var ids = tensor(prompt).unsqueeze(0);
                var sorted = trained.ContinueLogit(trained.Depth1(ids)).sigmoid()[0].data<float>().Order().ToArray();
                trained.SetThreshold((sorted[prompt.Length / 2] + sorted[(prompt.Length / 2) - 1]) / 2.0);
            }

            TaHCheckpoint.Save(trained, dir.Path, tokenizerDirectory: null, eosTokenId: 63);
        }

        using var engine = ModelLoader.Load(dir.Path);
        var inspection = Inspection.Run(engine, [.. prompt.Select(t => (int)t)], IterationPolicy.Parse(policy), greedySteps: 0);

        using var model = TaHCheckpoint.Load(dir.Path);
        using var scope2 = NewDisposeScope();
        using var _ = no_grad();
        var (depths, logits, probabilities) = Run(model, prompt, policy, model.TaH!.Decider.Threshold);
        Assert.Equal(depths, inspection.Prefill.Select(r => r.Depth).ToArray());
        if (policy == "decider")
        {
            Assert.Contains(1, depths);
            Assert.Contains(2, depths);
        }

        for (int p = 0; p < prompt.Length; p++)
        {
            // Two fp32 computations of the same values (dense masks here, paged attention there).
            AssertClose([.. inspection.Prefill[p].FinalLogits.Select(x => (double)x)], logits[p], Fp32Tolerance.ReductionOrder, $"position {p}");
            if (probabilities is not null)
            {
                Assert.InRange(probabilities[p], inspection.Prefill[p].ContinueProbability!.Value - Fp32Tolerance.Probability, inspection.Prefill[p].ContinueProbability!.Value + Fp32Tolerance.Probability);
            }
        }
    }

    /// <summary>The trainable model's prefill under a policy: depth, final logits and decider probability per position.</summary>
    private static (int[] Depths, float[][] Logits, double[]? Probabilities) Run(TrainableTaH model, long[] prompt, string policy, double? threshold)
    {
        model.IsTraining = false;
        using var ids = tensor(prompt).unsqueeze(0);
        var first = model.Depth1(ids);
        double[]? probabilities = null;
        Tensor iterate;
        switch (policy)
        {
            case "never":
                iterate = zeros(1, prompt.Length, dtype: ScalarType.Bool);
                break;
            case "always":
                iterate = ones(1, prompt.Length, dtype: ScalarType.Bool);
                break;
            default:
                var p = model.ContinueLogit(first).sigmoid();
                probabilities = [.. p[0].data<float>().Select(v => (double)v)];
                iterate = p.gt(threshold!.Value);
                break;
        }

        var final = policy == "never" ? first.Logits : model.Depth2(first, iterate);
        var depths = iterate[0].data<bool>().Select(b => b ? 2 : 1).ToArray();
        var logits = Enumerable.Range(0, prompt.Length).Select(i => final[0, i].data<float>().ToArray()).ToArray();
        return (depths, logits, probabilities);
    }

    private static void AssertClose(double[] expected, float[] actual, double tolerance, string where)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(worst <= tolerance, $"{where}: logits differ by up to {worst:E2} (tolerance {tolerance:E0}, see Fp32Tolerance)");
    }
}
