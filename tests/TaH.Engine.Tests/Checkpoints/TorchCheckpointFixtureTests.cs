using System.Text.Json;
using TaH.Checkpoints.Writing;
using TaH.Engine.Checkpoints;
using TorchSharp;

namespace TaH.Engine.Tests.Checkpoints;

public sealed class TorchCheckpointFixtureTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string DeciderPath(string model) => Path.Combine(TestFiles.Fixture(model), "iter_decider.bin");

    private static JsonElement DeciderKwargs(string model) =>
        TestFiles.ReadJson(Path.Combine(TestFiles.Fixture(model), "tah_config.json")).GetProperty("iter_decider_kwargs");

    /// <summary>MLPIterDecider's parameter names and shapes, derived from its constructor arguments (spec section 2).</summary>
    private static Dictionary<string, long[]> ExpectedParameters(string model)
    {
        var kwargs = DeciderKwargs(model);
        long topk = kwargs.GetProperty("topk").GetInt64();
        long h = kwargs.GetProperty("hidden_states_size").GetInt64();
        long layers = kwargs.GetProperty("hidden_states_layer_nums").GetArrayLength();
        long[] dims = [.. kwargs.GetProperty("hidden_dims").EnumerateArray().Select(d => d.GetInt64())];
        long expansion = kwargs.GetProperty("expansion_factor").GetInt64();

        var expected = new Dictionary<string, long[]>
        {
            ["logits_projection.weight"] = [h, topk],
            ["logits_projection.bias"] = [h],
            ["combined_projection.weight"] = [dims[0], (h * layers) + h],
            ["combined_projection.bias"] = [dims[0]],
            ["backbone.input_projection.weight"] = [dims[0], dims[0]],
            ["backbone.input_projection.bias"] = [dims[0]],
            ["backbone.output_layer.0.weight"] = [dims[^1]],
            ["backbone.output_layer.0.bias"] = [dims[^1]],
            ["backbone.output_layer.1.weight"] = [1, dims[^1]],
            ["backbone.output_layer.1.bias"] = [1],
            ["threshold"] = [],
        };
        long[] blockDims = [.. dims, dims[^1]];
        for (int j = 0; j < dims.Length; j++)
        {
            long din = blockDims[j];
            long dout = blockDims[j + 1];
            string p = $"backbone.blocks.{j}.";
            expected[p + "layer_norm.weight"] = [din];
            expected[p + "layer_norm.bias"] = [din];
            expected[p + "mlp.0.weight"] = [din * expansion, din];
            expected[p + "mlp.0.bias"] = [din * expansion];
            expected[p + "mlp.3.weight"] = [dout, din * expansion];
            expected[p + "mlp.3.bias"] = [dout];
            if (din != dout)
            {
                expected[p + "dim_change.weight"] = [dout, din];
                expected[p + "dim_change.bias"] = [dout];
            }
        }

        if (kwargs.GetProperty("normalize_input").GetBoolean())
        {
            expected["layer_norm_hidden_states.weight"] = [h * layers];
            expected["layer_norm_hidden_states.bias"] = [h * layers];
        }

        return expected;
    }

    [Theory]
    [InlineData("a", 31)]
    [InlineData("b", 33)]
    public void DeciderStateDictHasTheSpecifiedParameters(string model, int count)
    {
        using var payload = LoadedPayload.Load(DeciderPath(model));
        var expected = ExpectedParameters(model);

        Assert.Equal("MLPIterDecider", payload.Dict["class"]);
        var stateDict = Assert.IsType<PyDict>(payload.Dict["state_dict"]);
        Assert.Equal(count, stateDict.Count);
        Assert.Equal(expected.Keys.Order(), stateDict.Keys.Cast<string>().Order());
        foreach (var (name, shape) in expected)
        {
            var tensor = Assert.IsAssignableFrom<torch.Tensor>(stateDict[name]);
            Assert.Equal(shape, tensor.shape);
            Assert.Equal(torch.ScalarType.Float32, tensor.dtype);
            Assert.True(tensor.is_contiguous());
        }

        Assert.Equal(model == "b", stateDict.ContainsKey("layer_norm_hidden_states.weight"));
    }

    [Theory]
    [InlineData("a")]
    [InlineData("b")]
    public void LearnedThresholdIsTheSavedValue(string model)
    {
        using var payload = LoadedPayload.Load(DeciderPath(model));
        var threshold = (torch.Tensor)((PyDict)payload.Dict["state_dict"]!)["threshold"]!;
        Assert.Empty(threshold.shape);
        Assert.Equal(0.123f, threshold.item<float>());
    }

    [Theory]
    [InlineData("a")]
    [InlineData("b")]
    public void InitArgsMatchTheConfiguredConstructorArguments(string model)
    {
        using var payload = LoadedPayload.Load(DeciderPath(model));
        var initArgs = Assert.IsType<PyDict>(payload.Dict["init_args"]);
        var kwargs = DeciderKwargs(model);

        foreach (var key in new[] { "topk", "hidden_states_size", "expansion_factor", "max_iter" })
        {
            Assert.Equal(kwargs.GetProperty(key).GetInt64(), initArgs[key]);
        }

        foreach (var key in new[] { "hidden_states_layer_nums", "hidden_dims" })
        {
            var list = Assert.IsType<List<object?>>(initArgs[key]);
            Assert.Equal(kwargs.GetProperty(key).EnumerateArray().Select(e => (object?)e.GetInt64()), list);
        }

        Assert.Equal(kwargs.GetProperty("normalize_input").GetBoolean(), initArgs["normalize_input"]);
        Assert.Equal(kwargs.GetProperty("dropout_rate").GetDouble(), initArgs["dropout_rate"]);
        Assert.IsType<double>(initArgs["threshold"]);
        var dtype = Assert.IsType<PyGlobal>(initArgs["dtype"]);
        Assert.Equal(new PyGlobal("torch", "float32"), dtype);
        Assert.True(dtype.TryGetDtype(out var scalarType));
        Assert.Equal(torch.ScalarType.Float32, scalarType);
    }

    [Theory]
    [InlineData("a")]
    [InlineData("b")]
    public void TensorsHoldTheirStorageRecordBytes(string model)
    {
        string path = DeciderPath(model);
        using var payload = LoadedPayload.Load(path);
        var stateDict = (PyDict)payload.Dict["state_dict"]!;

        // torch.save numbers storages in the order it meets them: the i-th tensor owns data/i.
        for (int i = 0; i < stateDict.Count; i++)
        {
            var tensor = (torch.Tensor)stateDict.Values[i]!;
            Assert.Equal(TorchTestFiles.ReadEntry(path, $"iter_decider/data/{i}"), TestFiles.BytesOf(tensor));
        }
    }

    [Theory]
    [InlineData("a")]
    [InlineData("b")]
    public void TruncatedDeciderFailsCleanly(string model)
    {
        byte[] original = File.ReadAllBytes(DeciderPath(model));
        foreach (int cut in new[] { 0, 1, 30, 200, 3000, original.Length / 2, original.Length - 100, original.Length - 22, original.Length - 1 })
        {
            string path = _dir.File($"cut-{cut}.bin");
            File.WriteAllBytes(path, original[..cut]);
            var ex = Assert.Throws<CheckpointException>(() => TorchCheckpoint.Load(path));
            Assert.Contains($"cut-{cut}.bin", ex.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("a")]
    [InlineData("b")]
    public void SaveThenLoadRoundTripsTheDeciderBitExactly(string model)
    {
        using var original = LoadedPayload.Load(DeciderPath(model));
        string path = _dir.File("iter_decider.bin");

        TorchCheckpointWriter.Save(path, original.Value);

        using var reloaded = LoadedPayload.Load(path);
        TorchTestFiles.AssertSamePayload(original.Value, reloaded.Value);
    }

    [Theory]
    [InlineData("a", 31)]
    [InlineData("b", 33)]
    public void SavedDeciderPicklesExactlyAsTorchSaveDid(string model, int storages)
    {
        using var original = LoadedPayload.Load(DeciderPath(model));
        string path = _dir.File("iter_decider.bin");

        TorchCheckpointWriter.Save(path, original.Value);

        Assert.Equal(TorchTestFiles.ReadEntry(DeciderPath(model), "iter_decider/data.pkl"),
            TorchTestFiles.ReadEntry(path, "iter_decider/data.pkl"));
        for (int i = 0; i < storages; i++)
        {
            Assert.Equal(TorchTestFiles.ReadEntry(DeciderPath(model), $"iter_decider/data/{i}"),
                TorchTestFiles.ReadEntry(path, $"iter_decider/data/{i}"));
        }
    }
}
