using System.Text.Json.Nodes;
using TaH.Engine.Tests.Cli;

namespace TaH.Engine.Tests.Golden;

/// <summary>
/// The engine picks vector code at run time: libtorch by ATEN_CPU_CAPABILITY (avx512, avx2,
/// default = scalar), .NET's TensorPrimitives (the sampler, the CPU attention) by the JIT's
/// instruction sets. Each path this machine has, and the scalar one, must give the float64
/// golden's depths and tokens exactly and its logits within <see cref="Fp32Tolerance.Logit"/>:
/// a CI machine with AVX2 only or with AVX-512 runs one of them.
/// </summary>
public class VectorPathTests
{
    public static TheoryData<string> Paths() => ["native", "avx2", "scalar"];

    [Theory]
    [MemberData(nameof(Paths))]
    public void InspectOnThisVectorPathMatchesTheFloat64Golden(string path)
    {
        var environment = path switch
        {
            "avx2" => new Dictionary<string, string> { ["ATEN_CPU_CAPABILITY"] = "avx2", ["DOTNET_EnableAVX512F"] = "0" },
            "scalar" => new Dictionary<string, string> { ["ATEN_CPU_CAPABILITY"] = "default", ["DOTNET_EnableHWIntrinsic"] = "0" },
            _ => [],
        };

        // Checkpoint b under the decider: the worst-conditioned case (depth 2 at 8 positions).
        var golden = Fixtures.Golden("b");
        var expected = golden["policies"]!["decider"]!;
        int greedy = ((JsonArray)expected["greedy_tokens"]!).Count;
        string ids = string.Join(",", ((JsonArray)golden["prompt_ids"]!).Select(n => (int)n!));
        using var dir = new TempDirectory();
        var (code, _, stderr) = TahProcess.Run(environment,
            "inspect", "--model", Fixtures.TinyCheckpoint("b"), "--ids", ids, "--policy", "decider", "--greedy", greedy.ToString(System.Globalization.CultureInfo.InvariantCulture), "--out", dir.File("out.json"));
        Assert.True(code == 0, stderr);
        var actual = JsonNode.Parse(File.ReadAllText(dir.File("out.json")))!["policies"]!["decider"]!;

        Assert.Equal(expected["greedy_tokens"]!.ToJsonString(), actual["greedy_tokens"]!.ToJsonString());
        Assert.Equal(expected["greedy_depths"]!.ToJsonString(), actual["greedy_depths"]!.ToJsonString());
        var expectedPrefill = (JsonArray)expected["prefill"]!;
        var actualPrefill = (JsonArray)actual["prefill"]!;
        Assert.Equal(expectedPrefill.Select(r => (int)r!["depth"]!), actualPrefill.Select(r => (int)r!["depth"]!));
        var expectedLogits = expectedPrefill.Select(r => r!["final_logits"]!).Concat((JsonArray)expected["greedy_step_logits"]!).ToList();
        var actualLogits = actualPrefill.Select(r => r!["final_logits"]!).Concat((JsonArray)actual["greedy_step_logits"]!).ToList();
        Assert.Equal(expectedLogits.Count, actualLogits.Count);
        double worst = 0;
        for (int i = 0; i < expectedLogits.Count; i++)
        {
            var e = (JsonArray)expectedLogits[i]!;
            var a = (JsonArray)actualLogits[i]!;
            Assert.Equal(e.Count, a.Count);
            worst = Math.Max(worst, e.Zip(a, (x, y) => Math.Abs((double)x! - (double)y!)).Max());
        }

        Assert.True(worst <= Fp32Tolerance.Logit, $"{path}: logits differ from float64 by up to {worst:E2}");
        var probabilities = expectedPrefill.Select(r => r!["continue_prob"]).Concat((JsonArray)expected["greedy_continue_probs"]!)
            .Zip(actualPrefill.Select(r => r!["continue_prob"]).Concat((JsonArray)actual["greedy_continue_probs"]!));
        foreach (var (e, a) in probabilities)
        {
            Assert.Equal(e is null, a is null);
            if (e is not null)
            {
                Assert.InRange((double)a!, (double)e - Fp32Tolerance.Probability, (double)e + Fp32Tolerance.Probability);
            }
        }
    }
}
