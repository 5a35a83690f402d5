using TaH.Engine.Checkpoints;
using TaH.Engine.Config;
using TaH.Engine.TaH;
using TaH.Kernels;
using TaH.Kernels.Cpu;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Engine.Model;

/// <summary>Where and in what precision the model runs.</summary>
public sealed record ModelOptions
{
    public static ModelOptions Cpu { get; } = new();

    public Device Device { get; init; } = CPU;

    /// <summary>Activations (and dense weights); the CPU computes in fp32 whatever the file holds.</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;

    /// <summary>How the linear maps' weights are held (the CPU only: a GPU holds them in <see cref="DType"/>).</summary>
    public WeightFormat Weights { get; init; } = WeightFormat.Fp32;

    /// <summary>
    /// The decider MLP's format when it differs from <see cref="Weights"/>: a q4_0 model keeps its
    /// decisions with a q8_0 decider, while a q4_0 decider changes some (the README's accuracy table).
    /// </summary>
    public WeightFormat? DeciderWeights { get; init; }

    /// <summary>The format the decider's linear layers take.</summary>
    public WeightFormat Decider => DeciderWeights ?? Weights;

    /// <summary>
    /// <c>cpu</c> (fp32) or <c>cuda</c> / <c>cuda:N</c> (bf16, the CUDA kernels); a GPU that
    /// TorchSharp cannot reach is refused with the reason. <paramref name="weights"/>
    /// (<c>fp32</c>, <c>bf16</c>, <c>q8_0</c>, <c>q4_0</c>; default fp32) and
    /// <paramref name="deciderWeights"/> (default: the same) apply to the CPU; a GPU takes bf16 only, its one format.
    /// </summary>
    public static ModelOptions Parse(string device, string? weights = null, string? deciderWeights = null)
    {
        var format = weights is null ? (WeightFormat?)null : WeightFormats.Parse(weights);
        var deciderFormat = deciderWeights is null ? (WeightFormat?)null : WeightFormats.Parse(deciderWeights, "--decider-weights");
        if (device.Equals("cpu", StringComparison.OrdinalIgnoreCase))
        {
            return format is null && deciderFormat is null ? Cpu : new ModelOptions { Weights = format ?? WeightFormat.Fp32, DeciderWeights = deciderFormat };
        }

        if (!device.StartsWith("cuda", StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException($"--device must be cpu or cuda[:N] (got '{device}')");
        }

        int index = 0;
        if (device.Length > 4 && (device[4] != ':' || !int.TryParse(device.AsSpan(5), out index)))
        {
            throw new ArgumentException($"--device must be cpu or cuda[:N] (got '{device}')");
        }

        if (format is { } chosen and not WeightFormat.Bf16)
        {
            throw new ArgumentException($"--weights {chosen.Name()} runs on the CPU; on a GPU the weights are bf16");
        }

        if (deciderFormat is { } decider and not WeightFormat.Bf16)
        {
            throw new ArgumentException($"--decider-weights {decider.Name()} runs on the CPU; on a GPU the decider is bf16");
        }

        if (!torch.cuda.is_available())
        {
            throw new ArgumentException("--device cuda: TorchSharp finds no CUDA device (a CUDA build of libtorch and an NVIDIA driver are needed; see the README's GPU section)");
        }

        return new ModelOptions { Device = new Device(DeviceType.CUDA, index), DType = ScalarType.BFloat16 };
    }
}

/// <summary>
/// Loads a checkpoint directory as released: the Qwen3 base (config.json, safetensors single or
/// sharded), and when present the TaH parts (tah_config.json, the PEFT adapter under lora/,
/// iter_decider.bin). A plain Qwen3 directory loads as a one-depth model.
/// </summary>
public static class ModelLoader
{
    /// <summary>
    /// Loads <paramref name="directory"/>. <paramref name="progress"/> hears of each linear map
    /// built (read, and converted to <see cref="ModelOptions.Weights"/>), for a progress bar.
    /// </summary>
    public static TaHModel Load(string directory, ModelOptions? options = null, Action<LoadProgress>? progress = null)
    {
        options ??= ModelOptions.Cpu;
        directory = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(directory))
        {
            throw new CheckpointException(directory, "model directory not found");
        }

        var config = Qwen3Config.Load(Path.Combine(directory, "config.json"));
        var generation = GenerationConfig.Load(Path.Combine(directory, "generation_config.json"));
        string tahPath = Path.Combine(directory, "tah_config.json");
        var tah = File.Exists(tahPath) ? TaHConfig.Load(tahPath) : null;

        // Base shapes first: a config that disagrees with the weights is the root problem.
        using var weights = SafeTensorsCheckpoint.OpenDirectory(directory);
        CheckBaseShapes(weights, config, directory);

        var adapter = tah is null ? null : LoraAdapter.LoadIfPresent(Path.Combine(directory, "lora"), config);
        try
        {
            int deciderLinears = tah is not null && tah.MaxIter > 1 ? 1 : 0;
            var counter = new ProgressCounter(
                (config.NumHiddenLayers * 4) + (config.TieWordEmbeddings ? 1 : 2) + deciderLinears,
                progress);
            var baseModel = LoadBase(weights, config, adapter, options, counter);
            IterationDecider? decider = null;
            try
            {
                string deciderPath = Path.Combine(directory, "iter_decider.bin");
                if (tah is not null && tah.MaxIter > 1 && File.Exists(deciderPath))
                {
                    decider = LoadDecider(deciderPath, tah, config, options);
                }

                counter.Finish();
                WeightMemory.ReturnFreedMemory();

                return new TaHModel(baseModel, decider, tah?.MaxIter ?? 1, tah?.InputTopK ?? 1, adapter is not null, generation, directory);
            }
            catch
            {
                baseModel.Dispose();
                decider?.Dispose();
                throw;
            }
        }
        finally
        {
            adapter?.Dispose();
        }
    }

    private static void CheckBaseShapes(SafeTensorsCheckpoint weights, Qwen3Config config, string directory)
    {
        foreach (var (name, shape) in BaseShapes(config))
        {
            if (!weights.Contains(name))
            {
                throw new CheckpointException(directory, $"weight '{name}' is missing from the checkpoint");
            }

            var stored = weights.Info(name).Shape;
            if (!stored.SequenceEqual(shape))
            {
                throw new CheckpointException(
                    weights.PathOf(name),
                    $"weight '{name}' has shape [{string.Join(", ", stored)}], but config.json implies [{string.Join(", ", shape)}]");
            }
        }
    }

    private static Qwen3Model LoadBase(SafeTensorsCheckpoint weights, Qwen3Config config, LoraAdapter? adapter, ModelOptions options, ProgressCounter progress)
    {
        // Everything made here is disposed with the scope unless the model keeps it.
        using var scope = NewDisposeScope();
        bool dense = options.Weights == WeightFormat.Fp32;
        Tensor Take(string name)
        {
            using var raw = weights.Load(name);
            return raw.to(options.DType, options.Device, copy: true);
        }

        // A linear map's weight: a kernel format converts from the type on disk, freeing each
        // tensor once converted, so loading holds one layer's weights beside the converted ones.
        Tensor TakeWeight(string name) => dense ? Take(name) : weights.Load(name);

        LinearWeight Linear(string name)
        {
            var tensor = TakeWeight(name);
            var weight = Convert(weights, [name], [tensor], options.Weights);
            if (!dense)
            {
                tensor.Dispose();
            }

            progress.Step();
            return weight;
        }

        var embed = Linear("model.embed_tokens.weight");
        var layers = new Qwen3DecoderLayer[config.NumHiddenLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string p = $"model.layers.{i}";
            Tensor? Bias(string module) => config.AttentionBias ? Take($"{p}.self_attn.{module}.bias") : null;
            (string, Tensor, Tensor?) Projection(string block, string module, bool bias = false) =>
                (module, TakeWeight($"{p}.{block}.{module}.weight"), bias ? Bias(module) : null);

            layers[i] = new Qwen3DecoderLayer(
                Take($"{p}.input_layernorm.weight"),
                Fuse(weights, i, [Projection("self_attn", "q_proj", true), Projection("self_attn", "k_proj", true), Projection("self_attn", "v_proj", true)], adapter, options, progress),
                Take($"{p}.self_attn.q_norm.weight"),
                Take($"{p}.self_attn.k_norm.weight"),
                Fuse(weights, i, [Projection("self_attn", "o_proj")], adapter, options, progress),
                Take($"{p}.post_attention_layernorm.weight"),
                Fuse(weights, i, [Projection("mlp", "gate_proj"), Projection("mlp", "up_proj")], adapter, options, progress),
                Fuse(weights, i, [Projection("mlp", "down_proj")], adapter, options, progress));
        }

        var norm = Take("model.norm.weight");
        var lmHead = config.TieWordEmbeddings ? embed : Linear("lm_head.weight");
        var model = new Qwen3Model(config, embed, layers, norm, lmHead);
        foreach (var tensor in model.Parameters())
        {
            tensor.DetachFromDisposeScope();
        }

        return model;
    }

    /// <summary>A weight in its format; a value the format cannot hold is the checkpoint's problem, named.</summary>
    private static LinearWeight Convert(SafeTensorsCheckpoint weights, string[] names, Tensor[] parts, WeightFormat format)
    {
        try
        {
            return LinearWeight.Create(parts, format);
        }
        catch (ArgumentException e)
        {
            throw new CheckpointException(weights.SourcePath, $"{string.Join(" | ", names)}: cannot convert to {format.Name()}: {e.Message}");
        }
    }

    /// <summary>Every base weight and the shape config.json implies for it.</summary>
    private static List<(string Name, long[] Shape)> BaseShapes(Qwen3Config c)
    {
        long h = c.HiddenSize, hd = c.HeadDim, q = c.NumAttentionHeads * hd, kv = c.NumKeyValueHeads * hd, inter = c.IntermediateSize;
        var shapes = new List<(string, long[])> { ("model.embed_tokens.weight", [c.VocabSize, h]) };
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}";
            shapes.Add(($"{p}.input_layernorm.weight", [h]));
            shapes.Add(($"{p}.self_attn.q_proj.weight", [q, h]));
            shapes.Add(($"{p}.self_attn.k_proj.weight", [kv, h]));
            shapes.Add(($"{p}.self_attn.v_proj.weight", [kv, h]));
            shapes.Add(($"{p}.self_attn.o_proj.weight", [h, q]));
            shapes.Add(($"{p}.self_attn.q_norm.weight", [hd]));
            shapes.Add(($"{p}.self_attn.k_norm.weight", [hd]));
            shapes.Add(($"{p}.post_attention_layernorm.weight", [h]));
            shapes.Add(($"{p}.mlp.gate_proj.weight", [inter, h]));
            shapes.Add(($"{p}.mlp.up_proj.weight", [inter, h]));
            shapes.Add(($"{p}.mlp.down_proj.weight", [h, inter]));
            if (c.AttentionBias)
            {
                shapes.Add(($"{p}.self_attn.q_proj.bias", [q]));
                shapes.Add(($"{p}.self_attn.k_proj.bias", [kv]));
                shapes.Add(($"{p}.self_attn.v_proj.bias", [kv]));
            }
        }

        shapes.Add(("model.norm.weight", [h]));
        if (!c.TieWordEmbeddings)
        {
            shapes.Add(("lm_head.weight", [c.VocabSize, h]));
        }

        return shapes;
    }

    /// <summary>
    /// Concatenates projections that read the same input into one matrix (fewer, larger matmuls),
    /// freeing the parts. Their LoRA matrices stack the same way: A rows on top of each other, B
    /// block-diagonal, so the fused delta equals the separate deltas side by side.
    /// </summary>
    private static LoraLinear Fuse(SafeTensorsCheckpoint weights, int layer, (string Module, Tensor Weight, Tensor? Bias)[] parts, LoraAdapter? adapter, ModelOptions options, ProgressCounter progress)
    {
        var weight = Convert(weights, [.. parts.Select(p => $"model.layers.{layer}.{p.Module}")], [.. parts.Select(p => p.Weight)], options.Weights);
        Tensor? bias = parts[0].Bias is null ? null
            : parts.Length == 1 ? parts[0].Bias : cat(parts.Select(p => p.Bias!).ToArray(), 0);
        var pairs = parts.Select(p => adapter?.Find(layer, p.Module)).ToArray();

        LoraDelta? lora = null;
        if (pairs.Any(pair => pair is not null))
        {
            lora = LoraDelta.Create(
                [.. parts.Select((p, j) => (p.Weight.shape[0], pairs[j]?.A, pairs[j]?.B))],
                weight.InFeatures, adapter!.Scaling, cpuKernels: weight.Dense is null, options.DType, options.Device);
        }

        // Parts the weight did not take over are freed now, not with the loader's scope.
        bool takenOver = parts.Length == 1 && weight.Dense is not null;
        foreach (var part in parts)
        {
            if (!takenOver)
            {
                part.Weight.Dispose();
            }

            if (parts.Length > 1)
            {
                part.Bias?.Dispose();
            }
        }

        progress.Step();
        return new LoraLinear(weight, bias, lora);
    }

    private static IterationDecider LoadDecider(string path, TaHConfig tah, Qwen3Config model, ModelOptions options)
    {
        var loaded = TorchCheckpoint.Load(path);
        try
        {
            var payload = loaded as PyDict
                ?? throw new CheckpointException(path, "expected a dict saved by torch.save (class, init_args, state_dict)");
            if (payload.TryGet<string>("class", out var cls) && cls != TaHConfig.SupportedDecider)
            {
                throw new CheckpointException(path, $"decider class '{cls}' is not supported (only {TaHConfig.SupportedDecider})");
            }

            // The constructor arguments: tah_config.json's iter_decider_kwargs, else the file's init_args.
            var config = tah.Decider
                ?? (payload.TryGet<PyDict>("init_args", out var initArgs) ? DeciderConfig.FromInitArgs(path, PyJson.ToJsonObject(initArgs), tah.MaxIter) : null)
                ?? throw new CheckpointException(path, "no decider arguments in tah_config.json's iter_decider_kwargs nor in init_args");
            int entries = model.NumHiddenLayers + 1;
            foreach (int entry in config.HiddenStatesLayerNums)
            {
                if (entry < 0 || entry >= entries)
                {
                    throw new CheckpointException(path, $"hidden_states_layer_nums entry {entry} is out of range for a model with {model.NumHiddenLayers} layers (0..{entries - 1})");
                }
            }

            if (config.HiddenStatesSize != model.HiddenSize)
            {
                throw new CheckpointException(path, $"decider hidden_states_size {config.HiddenStatesSize} differs from the model's hidden_size {model.HiddenSize}");
            }

            if (!payload.TryGet<PyDict>("state_dict", out var stateDict))
            {
                throw new CheckpointException(path, "'state_dict' is missing or not a dict");
            }

            // Only parameters are read: entries named like constructor arguments (the learned
            // threshold) are ignored, as the reference loader drops them.
            var tensors = new Dictionary<string, Tensor>();
            foreach (var (key, value) in stateDict)
            {
                if (key is string name && value is Tensor t)
                {
                    tensors[name] = t;
                }
            }

            return IterationDecider.Create(config, tensors, path, options);
        }
        finally
        {
            PyJson.DisposeTensors(loaded);
        }
    }
}

/// <summary>How far loading has come: linear maps built of the total.</summary>
public readonly record struct LoadProgress(int Done, int Total);

internal sealed class ProgressCounter(int total, Action<LoadProgress>? report)
{
    private int _done;

    public void Step() => report?.Invoke(new LoadProgress(Math.Min(++_done, total), total));

    public void Finish()
    {
        if (_done < total)
        {
            _done = total;
            report?.Invoke(new LoadProgress(total, total));
        }
    }
}
