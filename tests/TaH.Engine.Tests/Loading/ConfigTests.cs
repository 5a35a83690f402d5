using TaH.Engine.Checkpoints;
using TaH.Engine.Config;

namespace TaH.Engine.Tests.Loading;

public class ConfigTests
{
    [Fact]
    public void FixtureTaHConfigWithLegacyKeysAndDtypeSentinel()
    {
        var config = TaHConfig.Load(Path.Combine(Fixtures.TinyCheckpoint("b"), "tah_config.json"));
        Assert.Equal(2, config.MaxIter);
        Assert.Equal(16, config.InputTopK);
        var decider = config.Decider!;
        Assert.Equal([1, 3], decider.HiddenStatesLayerNums);
        Assert.Equal([32, 48, 48], decider.HiddenDims);
        Assert.True(decider.NormalizeInput);
        Assert.Equal(0.4337, decider.Threshold);
        Assert.Equal("float32", decider.DType);
    }

    [Theory]
    [InlineData("{\"__dtype__\": true, \"__str__\": \"torch.bfloat16\"}", "bfloat16")]
    [InlineData("\"torch.float16\"", "float16")]
    [InlineData("\"float32\"", "float32")]
    public void DtypeForms(string json, string expected)
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("tah_config.json"), $"{{\"max_iter\": 2, \"iter_decider_kwargs\": {{\"topk\": 4, \"dtype\": {json}}}}}");
        Assert.Equal(expected, TaHConfig.Load(dir.File("tah_config.json")).Decider!.DType);
    }

    [Fact]
    public void TypeSentinelsAndUnknownKeysAreIgnored()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("tah_config.json"), """
            {"max_iter": 2, "future": {"__type__": true, "__module__": "tah.x", "__name__": "Thing"},
             "iter_decider_kwargs": {"topk": 8, "extra": [1, 2, 3]}, "input_updater_kwargs": {"topk": 5, "other": 1}}
            """);
        var config = TaHConfig.Load(dir.File("tah_config.json"));
        Assert.Equal(5, config.InputTopK);
        Assert.Equal(8, config.Decider!.TopK);
        Assert.Equal([256, 512, 256], config.Decider.HiddenDims); // the reference constructor's default
    }

    [Fact]
    public void WrongTypesNameTheKey()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("tah_config.json"), "{\"max_iter\": \"two\"}");
        var e = Assert.Throws<CheckpointException>(() => TaHConfig.Load(dir.File("tah_config.json")));
        Assert.Contains("tah_config.json", e.Message);
        Assert.Contains("'max_iter' must be an integer", e.Message);
    }

    [Fact]
    public void UnsupportedDeciderIsNamed()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("tah_config.json"), "{\"max_iter\": 2, \"iter_decider\": \"IterLabelDecider\"}");
        var e = Assert.Throws<CheckpointException>(() => TaHConfig.Load(dir.File("tah_config.json")));
        Assert.Contains("'IterLabelDecider' is not supported", e.Message);
    }

    [Fact]
    public void EosIdsFromAnIntOrAList()
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.File("generation_config.json"), "{\"eos_token_id\": [151645, 151643], \"temperature\": 0.6, \"top_k\": 20}");
        var generation = GenerationConfig.Load(dir.File("generation_config.json"));
        Assert.Equal([151645, 151643], generation.EosTokenIds);
        Assert.Equal(0.6, generation.Temperature);
        Assert.Equal(20, generation.TopK);
        Assert.Equal([2], GenerationConfig.Load(Path.Combine(Fixtures.TinyCheckpoint("a"), "generation_config.json")).EosTokenIds);
    }
}
