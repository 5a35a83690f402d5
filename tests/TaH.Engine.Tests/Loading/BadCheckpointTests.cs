using TaH.Engine.Checkpoints;
using TaH.Engine.Generation;
using TaH.Engine.Model;

namespace TaH.Engine.Tests.Loading;

/// <summary>
/// Broken checkpoints fail with a <see cref="CheckpointException"/> whose message names the file
/// and says what is wrong; never an index, JSON or null-reference exception.
/// </summary>
public class BadCheckpointTests
{
    [Fact]
    public void MissingSafetensors()
    {
        using var dir = CopyOf("a");
        File.Delete(dir.File("model.safetensors"));
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(dir.Path));
        Assert.Contains(dir.Path, e.Message);
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void CorruptSafetensorsHeader()
    {
        using var dir = CopyOf("a");
        var bytes = File.ReadAllBytes(dir.File("model.safetensors"));
        bytes[8] = (byte)'#'; // the JSON header's opening brace
        File.WriteAllBytes(dir.File("model.safetensors"), bytes);
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(dir.Path));
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void TruncatedSafetensors()
    {
        using var dir = CopyOf("a");
        var bytes = File.ReadAllBytes(dir.File("model.safetensors"));
        File.WriteAllBytes(dir.File("model.safetensors"), bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(dir.Path));
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void MissingShardNamedByTheIndex()
    {
        using var dir = CopyOf("b");
        File.Delete(dir.File("model-00002-of-00002.safetensors"));
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(dir.Path));
        Assert.Contains("model-00002-of-00002.safetensors", e.Message);
    }

    [Fact]
    public void ShapeMismatchBetweenConfigAndWeights()
    {
        using var dir = CopyOf("a");
        Edit(dir.File("config.json"), "\"intermediate_size\": 128", "\"intermediate_size\": 96");
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(dir.Path));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("mlp.gate_proj.weight", e.Message);
        Assert.Contains("[128, 64]", e.Message);
        Assert.Contains("[96, 64]", e.Message);
    }

    [Fact]
    public void UnknownArchitecture()
    {
        using var dir = CopyOf("a");
        Edit(dir.File("config.json"), "Qwen3ForCausalLM", "LlamaForCausalLM");
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(dir.Path));
        Assert.Contains("config.json", e.Message);
        Assert.Contains("unknown architecture 'LlamaForCausalLM'", e.Message);
    }

    [Fact]
    public void MalformedConfigJson()
    {
        using var dir = CopyOf("a");
        File.WriteAllText(dir.File("config.json"), "{ \"vocab_size\": 512, ");
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(dir.Path));
        Assert.Contains("config.json", e.Message);
        Assert.Contains("not valid JSON", e.Message);
    }

    [Theory]
    [InlineData(0.1)]
    [InlineData(0.5)]
    [InlineData(0.97)]
    public void TruncatedIterDecider(double keep)
    {
        using var dir = CopyOf("a");
        var bytes = File.ReadAllBytes(dir.File("iter_decider.bin"));
        File.WriteAllBytes(dir.File("iter_decider.bin"), bytes[..(int)(bytes.Length * keep)]);
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(dir.Path));
        Assert.Contains("iter_decider.bin", e.Message);
    }

    [Fact]
    public void DeciderShapesThatDisagreeWithTheConfiguration()
    {
        using var dir = CopyOf("a");
        Edit(dir.File("tah_config.json"), "\"expansion_factor\": 2", "\"expansion_factor\": 3");
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(dir.Path));
        Assert.Contains("iter_decider.bin", e.Message);
        Assert.Contains("mlp.0.weight", e.Message);
    }

    [Fact]
    public void LoraForAModuleTheModelDoesNotHave()
    {
        using var dir = CopyOf("a");
        Edit(dir.File(Path.Combine("lora", "adapter_config.json")), "\"down_proj\"", "\"down_proj\", \"fc_in\"");
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(dir.Path));
        Assert.Contains("adapter_config.json", e.Message);
        Assert.Contains("'fc_in'", e.Message);
    }

    [Fact]
    public void LoraWeightsForALayerTheModelDoesNotHave()
    {
        using var dir = CopyOf("a");
        Edit(dir.File("config.json"), "\"num_hidden_layers\": 4", "\"num_hidden_layers\": 3");
        var e = Assert.Throws<CheckpointException>(() => ModelLoader.Load(dir.Path));
        Assert.Contains("adapter_model.safetensors", e.Message);
        Assert.Contains("layer 3", e.Message);
    }

    [Fact]
    public void UnknownKeysInTaHConfigAreIgnored()
    {
        using var dir = CopyOf("a");
        Edit(dir.File("tah_config.json"), "\"max_iter\": 2,", "\"max_iter\": 2, \"some_future_key\": {\"x\": [1, 2]},");
        using var model = ModelLoader.Load(dir.Path);
        Assert.Equal(2, model.MaxDepth);
        Assert.Equal(0.3748, model.Decider!.Threshold);
    }

    [Fact]
    public void PromptLongerThanTheContextIsRefusedByName()
    {
        using var model = ModelLoader.Load(Fixtures.TinyCheckpoint("a"));
        using var engine = new InferenceEngine(model, new EngineOptions { MaxModelLength = 16, KvBlocks = 8 });
        var e = Assert.Throws<InvalidRequestException>(() => engine.Add(new GenerationRequest { PromptTokens = [.. Enumerable.Range(1, 16)] }));
        Assert.Contains("16 tokens", e.Message);
        Assert.Contains("context", e.Message);
        Assert.Equal(RequestFields.Prompt, e.Param);
        Assert.Equal(RequestFields.ContextLengthExceeded, e.Code);
    }

    private static TempDirectory CopyOf(string fixture)
    {
        var dir = new TempDirectory();
        string source = Fixtures.TinyCheckpoint(fixture);
        foreach (string file in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(dir.Path, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }

        return dir;
    }

    private static void Edit(string path, string from, string to)
    {
        string text = File.ReadAllText(path);
        Assert.Contains(from, text);
        File.WriteAllText(path, text.Replace(from, to, StringComparison.Ordinal));
    }
}
