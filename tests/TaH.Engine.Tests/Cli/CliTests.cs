using System.Text.Json.Nodes;
using TaH.Checkpoints.Writing;

namespace TaH.Engine.Tests.Cli;

/// <summary>The command-line verbs end to end, through the real executable.</summary>
public class CliTests
{
    [Fact]
    public void InspectWritesTheGoldenFormat()
    {
        using var dir = new TempDirectory();
        var golden = Fixtures.Golden("b");
        string ids = string.Join(",", ((JsonArray)golden["prompt_ids"]!).Select(n => (int)n!));
        var (code, _, stderr) = TahProcess.Run("inspect", "--model", Fixtures.TinyCheckpoint("b"), "--ids", ids, "--policy", "decider", "--greedy", "12", "--out", dir.File("out.json"));
        Assert.True(code == 0, stderr);

        var output = JsonNode.Parse(File.ReadAllText(dir.File("out.json")))!;
        Assert.Equal("b", (string)output["checkpoint"]!);
        Assert.Equal(golden["prompt_ids"]!.ToJsonString(), output["prompt_ids"]!.ToJsonString());
        var expected = golden["policies"]!["decider"]!;
        var actual = output["policies"]!["decider"]!;
        Assert.Equal(
            ((JsonObject)expected).Select(p => p.Key).Order(),
            ((JsonObject)actual).Select(p => p.Key).Order());
        Assert.Equal((double)expected["threshold"]!, (double)actual["threshold"]!);
        foreach (string key in new[] { "greedy_tokens", "greedy_depths" })
        {
            Assert.Equal(expected[key]!.ToJsonString(), actual[key]!.ToJsonString());
        }

        Assert.Equal(
            ((JsonArray)expected["prefill"]!).Select(r => (int)r!["depth"]!),
            ((JsonArray)actual["prefill"]!).Select(r => (int)r!["depth"]!));
        Assert.Equal(512, ((JsonArray)actual["prefill"]![0]!["final_logits"]!).Count);
    }

    [Fact]
    public void TokenizeFillsTheGoldenFileFromATokenizerOnlyDirectory()
    {
        using var dir = new TempDirectory();
        foreach (string file in new[] { "tokenizer.json", "tokenizer_config.json" })
        {
            File.Copy(Path.Combine(Fixtures.Directory("qwen3-tokenizer"), file), dir.File(file));
        }

        var golden = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.Directory("qwen3-tokenizer"), "golden.json")))!;
        var input = golden.DeepClone();
        foreach (var item in (JsonArray)input["encode"]!)
        {
            ((JsonObject)item!).Remove("ids");
        }

        foreach (var item in (JsonArray)input["chat"]!)
        {
            ((JsonObject)item!).Remove("ids");
            ((JsonObject)item!).Remove("rendered");
        }

        File.WriteAllText(dir.File("in.json"), input.ToJsonString());
        var (code, _, stderr) = TahProcess.Run("tokenize", "--model", dir.Path, "--in", dir.File("in.json"), "--out", dir.File("out.json"));
        Assert.True(code == 0, stderr);
        var output = JsonNode.Parse(File.ReadAllText(dir.File("out.json")))!;
        Assert.True(JsonNode.DeepEquals(golden, output), "tokenize output differs from golden.json");
    }

    [Theory]
    [InlineData("missing-dir", "model directory not found")]
    [InlineData("no-config", "config.json: file not found")]
    public void BadModelDirectoryIsOneClearLine(string what, string phrase)
    {
        using var dir = new TempDirectory();
        string model = what == "missing-dir" ? dir.File("nothing-here") : dir.Path;
        var (code, stdout, stderr) = TahProcess.Run("inspect", "--model", model, "--ids", "1,2", "--out", dir.File("x.json"));
        Assert.Equal(2, code);
        Assert.Contains(phrase, stderr);
        Assert.StartsWith("error: ", stderr);
        Assert.DoesNotContain("   at ", stderr + stdout);
        Assert.Single(stderr.Trim().Split('\n'));
    }

    [Theory]
    [InlineData(null, "PASSIVE", "0")]
    [InlineData("ACTIVE", "ACTIVE", null)]
    public void LibtorchsOpenMpWorkersSleepWhenIdleUnlessTheUserSaysOtherwise(string? userPolicy, string policy, string? spinCount)
    {
        // libgomp prints what it read when libtorch loads it (OMP_DISPLAY_ENV): the native view,
        // which .NET's environment does not show. Its default spins 300000 times after each region.
        using var dir = new TempDirectory();
        var environment = new Dictionary<string, string> { ["OMP_DISPLAY_ENV"] = "VERBOSE" };
        if (userPolicy is not null)
        {
            environment["OMP_WAIT_POLICY"] = userPolicy;
        }

        var (code, _, stderr) = TahProcess.Run(environment, "inspect", "--model", Fixtures.TinyCheckpoint("a"), "--ids", "1,2,3", "--out", dir.File("x.json"));
        Assert.True(code == 0, stderr);
        Assert.Contains($"OMP_WAIT_POLICY = '{policy}'", stderr, StringComparison.Ordinal);
        if (spinCount is not null)
        {
            Assert.Contains($"GOMP_SPINCOUNT = '{spinCount}'", stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void CreateRandomsHelpNamesEveryShape()
    {
        var (code, stdout, stderr) = TahProcess.Run("create-random", "--help");
        Assert.True(code == 0, stderr);
        Assert.All(ModelShape.Known, shape => Assert.Contains(shape.Name, stdout, StringComparison.Ordinal));
    }

    [Fact]
    public void TokenIdOutsideTheVocabularyIsRefused()
    {
        using var dir = new TempDirectory();
        var (code, _, stderr) = TahProcess.Run("inspect", "--model", Fixtures.TinyCheckpoint("a"), "--ids", "1,512", "--out", dir.File("x.json"));
        Assert.Equal(2, code);
        Assert.Equal("error: Prompt token id 512 is outside the vocabulary (0..511).", stderr.Trim());
    }

    [Fact]
    public void PolicyNeedingTaHOnAPlainQwen3IsRefused()
    {
        using var dir = new TempDirectory();
        foreach (string file in new[] { "config.json", "model.safetensors" })
        {
            File.Copy(Path.Combine(Fixtures.TinyCheckpoint("a"), file), dir.File(file));
        }

        var (code, _, stderr) = TahProcess.Run("inspect", "--model", dir.Path, "--ids", "1,2", "--policy", "always", "--out", dir.File("x.json"));
        Assert.Equal(2, code);
        Assert.Contains("needs a TaH checkpoint", stderr);
    }

    /// <summary>Each verb that loads a model takes --weights, and refuses a format it does not know.</summary>
    [Theory]
    [InlineData("inspect", "--model", "tests/fixtures/tah-tiny/a", "--ids", "1,2,3", "--out", "OUT")]
    [InlineData("generate", "--model", "models/tah-arith", "--prompt", "1+2=", "-n", "3", "--greedy")]
    [InlineData("bench", "--model", "tests/fixtures/tah-tiny/a", "--concurrency", "2", "--tokens", "4", "--prompt-tokens", "4", "--policies", "never")]
    [InlineData("train", "eval", "--model", "models/tah-arith", "--data", "DATA", "--limit", "2")]
    public void EveryModelVerbTakesWeights(params string[] verb)
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("data.jsonl"), "{\"messages\": [{\"role\": \"user\", \"content\": \"What is 12+30?\"}, {\"role\": \"assistant\", \"content\": \"42\"}]}\n");
        string[] args = [.. verb.Select(a => a switch
        {
            "OUT" => dir.File("out.json"),
            "DATA" => dir.File("data.jsonl"),
            _ when a.StartsWith("tests/", StringComparison.Ordinal) || a.StartsWith("models/", StringComparison.Ordinal) => Path.Combine(Fixtures.Root, a),
            _ => a,
        })];

        var (bad, _, badError) = TahProcess.Run([.. args, "--weights", "q4"]);
        Assert.Equal(2, bad);
        Assert.Equal("error: --weights must be fp32, bf16, q8_0 or q4_0 (got 'q4')", badError.Trim().Split('\n')[^1]);

        var (code, _, stderr) = TahProcess.Run([.. args, "--weights", "q8_0"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("q8_0 weights:", stderr);

        (code, _, stderr) = TahProcess.Run([.. args, "--weights", "q4_0", "--decider-weights", "q8_0"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("q4_0 (decider q8_0) weights:", stderr);
    }

    [Fact]
    public void AccuracyComparesAFormatWithFp32()
    {
        var (code, stdout, stderr) = TahProcess.Run("accuracy", "--model", Fixtures.TinyCheckpoint("a"), "--weights", "bf16", "--positions", "24", "--target-share", "0.25");
        Assert.True(code == 0, stderr);
        // --target-share 0.25 of 24 positions: the threshold makes exactly 6 iterate in fp32.
        Assert.Matches(@"top-1 agreement +\d+\.\d\d % \(\d+/24\)", stdout);
        Assert.Matches(@"depth decisions +\d+\.\d\d % agree \(\d+/24\); threshold [0-9.]+; iterated fp32 6, bf16 \d+", stdout);
        Assert.Contains("max |logit difference|", stdout);

        var (bad, _, error) = TahProcess.Run("accuracy", "--model", Fixtures.TinyCheckpoint("a"), "--weights", "fp32");
        Assert.Equal(2, bad);
        Assert.Contains("fp32 is the reference", error);
    }
}
