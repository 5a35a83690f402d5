using System.Buffers.Binary;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Engine.Tests.Checkpoints;

public class SafeTensorsFixtureTests
{
    /// <summary>The Qwen3 weight names and shapes that config.json implies.</summary>
    private static Dictionary<string, long[]> ExpectedWeights(string model)
    {
        var config = TestFiles.ReadJson(Path.Combine(TestFiles.Fixture(model), "config.json"));
        long vocab = config.GetProperty("vocab_size").GetInt64();
        long hidden = config.GetProperty("hidden_size").GetInt64();
        long intermediate = config.GetProperty("intermediate_size").GetInt64();
        long heads = config.GetProperty("num_attention_heads").GetInt64();
        long kvHeads = config.GetProperty("num_key_value_heads").GetInt64();
        long headDim = config.GetProperty("head_dim").GetInt64();
        int layers = config.GetProperty("num_hidden_layers").GetInt32();

        var expected = new Dictionary<string, long[]>
        {
            ["model.embed_tokens.weight"] = [vocab, hidden],
            ["model.norm.weight"] = [hidden],
        };
        for (int i = 0; i < layers; i++)
        {
            string p = $"model.layers.{i}.";
            expected[p + "input_layernorm.weight"] = [hidden];
            expected[p + "post_attention_layernorm.weight"] = [hidden];
            expected[p + "self_attn.q_proj.weight"] = [heads * headDim, hidden];
            expected[p + "self_attn.k_proj.weight"] = [kvHeads * headDim, hidden];
            expected[p + "self_attn.v_proj.weight"] = [kvHeads * headDim, hidden];
            expected[p + "self_attn.o_proj.weight"] = [hidden, heads * headDim];
            expected[p + "self_attn.q_norm.weight"] = [headDim];
            expected[p + "self_attn.k_norm.weight"] = [headDim];
            expected[p + "mlp.gate_proj.weight"] = [intermediate, hidden];
            expected[p + "mlp.up_proj.weight"] = [intermediate, hidden];
            expected[p + "mlp.down_proj.weight"] = [hidden, intermediate];
        }

        if (!config.GetProperty("tie_word_embeddings").GetBoolean())
        {
            expected["lm_head.weight"] = [vocab, hidden];
        }

        return expected;
    }

    [Theory]
    [InlineData("a", "F32", 1)]
    [InlineData("b", "BF16", 2)]
    public void DirectoryHasTheWeightsTheConfigDescribes(string model, string dtype, int files)
    {
        using var checkpoint = SafeTensorsCheckpoint.OpenDirectory(TestFiles.Fixture(model));
        var expected = ExpectedWeights(model);

        Assert.Equal(files, checkpoint.Files.Count);
        Assert.Equal(expected.Keys.Order(), checkpoint.Names.Order());
        foreach (var (name, shape) in expected)
        {
            var info = checkpoint.Info(name);
            Assert.Equal(shape, info.Shape);
            Assert.Equal(dtype, info.DType);
            Assert.True(checkpoint.Contains(name));
        }
    }

    [Fact]
    public void TiedModelHasNoLmHeadAndUntiedModelHasOne()
    {
        using var a = SafeTensorsCheckpoint.OpenDirectory(TestFiles.Fixture("a"));
        using var b = SafeTensorsCheckpoint.OpenDirectory(TestFiles.Fixture("b"));
        Assert.False(a.Contains("lm_head.weight"));
        Assert.True(b.Contains("lm_head.weight"));
        Assert.Equal([512L, 64L], b.Info("lm_head.weight").Shape);
    }

    [Fact]
    public void Fp32TensorHoldsTheFileBytes()
    {
        string file = Path.Combine(TestFiles.Fixture("a"), "model.safetensors");
        using var checkpoint = SafeTensorsCheckpoint.OpenDirectory(TestFiles.Fixture("a"));
        using var embed = checkpoint.Load("model.embed_tokens.weight");
        using var same = checkpoint.Load("model.embed_tokens.weight", torch.ScalarType.Float32);

        Assert.Equal(torch.ScalarType.Float32, embed.dtype);
        Assert.Equal([512L, 64L], embed.shape);
        Assert.True(embed.is_contiguous());
        byte[] raw = TestFiles.RawTensorBytes(file, "model.embed_tokens.weight");
        Assert.Equal(raw, TestFiles.BytesOf(embed));
        Assert.Equal(raw, TestFiles.BytesOf(same));
    }

    [Theory]
    [InlineData("model-00001-of-00002.safetensors", "lm_head.weight")]
    [InlineData("model-00001-of-00002.safetensors", "model.embed_tokens.weight")]
    [InlineData("model-00002-of-00002.safetensors", "model.norm.weight")]
    [InlineData("model-00002-of-00002.safetensors", "model.layers.3.mlp.down_proj.weight")]
    public void Bf16WidensToTheFloatsItsBitsEncode(string shard, string name)
    {
        string file = Path.Combine(TestFiles.Fixture("b"), shard);
        byte[] raw = TestFiles.RawTensorBytes(file, name);
        // bf16 is the top half of an IEEE float32.
        var expected = new float[raw.Length / 2];
        for (int i = 0; i < expected.Length; i++)
        {
            expected[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(2 * i)) << 16);
        }

        using var checkpoint = SafeTensorsCheckpoint.OpenDirectory(TestFiles.Fixture("b"));
        Assert.Equal(file, checkpoint.Files.Single(f => f.Contains(name)).FilePath);
        using var bf16 = checkpoint.Load(name);
        using var widened = checkpoint.Load(name, torch.ScalarType.Float32);

        Assert.Equal(torch.ScalarType.BFloat16, bf16.dtype);
        Assert.Equal(raw, TestFiles.BytesOf(bf16));
        Assert.Equal(torch.ScalarType.Float32, widened.dtype);
        Assert.Equal(checkpoint.Info(name).Shape, widened.shape);
        Assert.Equal(expected, widened.data<float>().ToArray());
        Assert.Contains(expected, v => v != 0f);
    }

    [Theory]
    [InlineData("a")]
    [InlineData("b")]
    public void LoraAdapterHasRankFourPairsForEveryLinearLayer(string model)
    {
        var config = TestFiles.ReadJson(Path.Combine(TestFiles.Fixture(model), "lora", "adapter_config.json"));
        long r = config.GetProperty("r").GetInt64();
        var expectedWeights = ExpectedWeights(model);
        using var adapter = SafeTensorsCheckpoint.OpenFile(
            Path.Combine(TestFiles.Fixture(model), "lora", "adapter_model.safetensors"));

        Assert.Equal(4 * 7 * 2, adapter.Names.Count);
        foreach (var name in adapter.Names)
        {
            Assert.StartsWith("base_model.model.", name, StringComparison.Ordinal);
            string baseName = name["base_model.model.".Length..]
                .Replace(".lora_A.weight", ".weight", StringComparison.Ordinal)
                .Replace(".lora_B.weight", ".weight", StringComparison.Ordinal);
            long[] w = expectedWeights[baseName];
            long[] expected = name.Contains(".lora_A.", StringComparison.Ordinal) ? [r, w[1]] : [w[0], r];
            Assert.Equal(expected, adapter.Info(name).Shape);
        }
    }

    [Fact]
    public void MetadataOfTheFixtureIsRead()
    {
        using var file = SafeTensorsFile.Open(Path.Combine(TestFiles.Fixture("a"), "model.safetensors"));
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(file.Names.Count, file.Entries.Count);
    }
}
