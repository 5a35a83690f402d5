using System.Text.Json;
using System.Text.Json.Nodes;
using TaH.Checkpoints.Writing;
using TaH.Engine.Checkpoints;
using TaH.Engine.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace TaH.Training.Model;

/// <summary>
/// Creates, loads and saves <see cref="TrainableTaH"/> models in the released layout: config.json,
/// model.safetensors, and for TaH models tah_config.json, lora/ (PEFT) and iter_decider.bin
/// (torch.save), plus tokenizer files copied alongside. Weights are fp32 on disk.
/// </summary>
public static class TaHCheckpoint
{
    private static readonly string[] AttentionProjections = ["q_proj", "k_proj", "v_proj", "o_proj"];
    private static readonly string[] MlpProjections = ["gate_proj", "up_proj", "down_proj"];
    private static readonly Dictionary<string, string> PtMetadata = new() { ["format"] = "pt" };

    /// <summary>A plain Qwen3 with GPT-2-style initialisation (normal 0.02, norms at 1).</summary>
    public static TrainableTaH NewBase(Qwen3Config c, long seed)
    {
        using var generator = new Generator((ulong)seed);
        var shapes = BaseShapes(c);
        var weights = new Dictionary<string, Parameter>();
        foreach (string name in ExpectedBaseNames(c))
        {
            var shape = shapes[name];
            weights[name] = new Parameter(name.EndsWith("norm.weight", StringComparison.Ordinal) ? ones(shape) : normal(0, 0.02, shape, generator: generator));
        }

        return new TrainableTaH(c, null, weights, [], []);
    }

    /// <summary>
    /// The same base weights (taken over, not copied: dispose the result, not <paramref name="plain"/>) with a fresh LoRA (PEFT's init: A Kaiming-uniform,
    /// B zero, so depth 2 starts as the base model) and a fresh decider (Kaiming-normal, as the reference).
    /// </summary>
    public static TrainableTaH WithNewTaH(TrainableTaH plain, TaHSettings settings, long seed)
    {
        using var generator = new Generator((ulong)seed);
        var c = plain.Config;
        var lora = new Dictionary<string, Parameter>();
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            foreach (var (name, outSize, inSize) in Projections(c, i).Where(p => settings.Lora.TargetModules.Any(m => p.Name.EndsWith(m, StringComparison.Ordinal))))
            {
                double bound = 1.0 / Math.Sqrt(inSize);
                lora[$"base_model.model.{name}.lora_A.weight"] = new Parameter(rand([settings.Lora.Rank, inSize], generator: generator).mul_(2 * bound).sub_(bound));
                lora[$"base_model.model.{name}.lora_B.weight"] = new Parameter(zeros(outSize, settings.Lora.Rank));
            }
        }

        var decider = new Dictionary<string, Parameter>();
        foreach (var p in new DeciderLayout(settings.Decider).Parameters)
        {
            decider[p.Name] = new Parameter(
                p.IsBias ? zeros(p.Shape)
                : p.IsNorm ? ones(p.Shape)
                : normal(0, Math.Sqrt(2.0 / p.Shape[1]), p.Shape, generator: generator));
        }

        return new TrainableTaH(c, settings, plain.Base, lora, decider);
    }

    /// <summary>Loads a checkpoint directory (plain Qwen3 or TaH) as trainable fp32 parameters.</summary>
    public static TrainableTaH Load(string directory)
    {
        var config = Qwen3Config.Load(Path.Combine(directory, "config.json"));
        var weights = new Dictionary<string, Parameter>();
        using (var file = SafeTensorsCheckpoint.OpenDirectory(directory))
        {
            foreach (string name in ExpectedBaseNames(config))
            {
                weights[name] = new Parameter(file.Load(name, ScalarType.Float32));
            }
        }

        string tahPath = Path.Combine(directory, "tah_config.json");
        if (!File.Exists(tahPath))
        {
            return new TrainableTaH(config, null, weights, [], []);
        }

        var tah = TaHConfig.Load(tahPath);
        var loraConfig = LoraConfig.Load(Path.Combine(directory, "lora", "adapter_config.json"));
        var decider = tah.Decider ?? throw new CheckpointException(tahPath, "training needs iter_decider_kwargs in tah_config.json");
        var settings = new TaHSettings { Lora = loraConfig, Decider = decider, InputTopK = tah.InputTopK };

        // In the order training creates them, so that a saved optimizer state lines up on resume.
        var lora = new Dictionary<string, Parameter>();
        string adapterPath = Path.Combine(directory, "lora", "adapter_model.safetensors");
        using (var file = SafeTensorsCheckpoint.OpenFile(adapterPath))
        {
            var names = Enumerable.Range(0, config.NumHiddenLayers).SelectMany(i => Projections(config, i))
                .SelectMany(p => new[] { $"base_model.model.{p.Name}.lora_A.weight", $"base_model.model.{p.Name}.lora_B.weight" })
                .Where(file.Contains).ToList();
            if (names.Count != file.Names.Count)
            {
                throw new CheckpointException(adapterPath, "holds tensors that are not LoRA A/B weights of a Qwen3 projection");
            }

            foreach (string name in names)
            {
                lora[name] = new Parameter(file.Load(name, ScalarType.Float32));
            }
        }

        var deciderWeights = new Dictionary<string, Parameter>();
        string deciderPath = Path.Combine(directory, "iter_decider.bin");
        var payload = TorchCheckpoint.Load(deciderPath) as PyDict ?? throw new CheckpointException(deciderPath, "expected a dict");
        var state = payload.TryGet<PyDict>("state_dict", out var sd) ? sd : throw new CheckpointException(deciderPath, "no state_dict");
        foreach (var (name, shape, _) in new DeciderLayout(decider).Parameters)
        {
            var tensor = state.TryGet<Tensor>(name, out var t) ? t : throw new CheckpointException(deciderPath, $"decider parameter '{name}' is missing");
            deciderWeights[name] = new Parameter(tensor.to(ScalarType.Float32).reshape(shape));
        }

        foreach (var value in state.Values)
        {
            (value as Tensor)?.Dispose();
        }

        return new TrainableTaH(config, settings, weights, lora, deciderWeights);
    }

    /// <summary>
    /// Writes the model in the released layout. <paramref name="tokenizerDirectory"/>, when given,
    /// supplies tokenizer.json and tokenizer_config.json; <paramref name="eosTokenId"/> goes to
    /// generation_config.json (greedy by default: the demo answers arithmetic).
    /// </summary>
    public static void Save(TrainableTaH model, string directory, string? tokenizerDirectory, int eosTokenId)
    {
        Directory.CreateDirectory(directory);
        var c = model.Config;
        using (no_grad())
        {
            SafeTensorsWriter.Write(Path.Combine(directory, "model.safetensors"),
                ExpectedBaseNames(c).Select(n => new KeyValuePair<string, Tensor>(n, model.Base[n])), PtMetadata);
        }

        WriteJson(Path.Combine(directory, "config.json"), new JsonObject
        {
            ["architectures"] = new JsonArray("Qwen3ForCausalLM"),
            ["model_type"] = "qwen3",
            ["vocab_size"] = c.VocabSize,
            ["hidden_size"] = c.HiddenSize,
            ["intermediate_size"] = c.IntermediateSize,
            ["num_hidden_layers"] = c.NumHiddenLayers,
            ["num_attention_heads"] = c.NumAttentionHeads,
            ["num_key_value_heads"] = c.NumKeyValueHeads,
            ["head_dim"] = c.HeadDim,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = c.MaxPositionEmbeddings,
            ["rms_norm_eps"] = c.RmsNormEps,
            ["rope_theta"] = c.RopeTheta,
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
            ["use_sliding_window"] = false,
            ["tie_word_embeddings"] = c.TieWordEmbeddings,
            ["torch_dtype"] = "float32",
            ["eos_token_id"] = eosTokenId,
        });
        WriteJson(Path.Combine(directory, "generation_config.json"), new JsonObject
        {
            ["eos_token_id"] = new JsonArray(eosTokenId),
            ["do_sample"] = false,
        });

        if (tokenizerDirectory is not null && Path.GetFullPath(tokenizerDirectory) != Path.GetFullPath(directory))
        {
            foreach (string name in new[] { "tokenizer.json", "tokenizer_config.json" })
            {
                File.Copy(Path.Combine(tokenizerDirectory, name), Path.Combine(directory, name), overwrite: true);
            }
        }

        if (model.TaH is { } tah)
        {
            SaveTaH(model, tah, directory);
        }
    }

    private static void SaveTaH(TrainableTaH model, TaHSettings tah, string directory)
    {
        var d = tah.Decider;
        var kwargs = new JsonObject
        {
            ["topk"] = d.TopK,
            ["hidden_states_size"] = d.HiddenStatesSize,
            ["hidden_states_layer_nums"] = new JsonArray([.. d.HiddenStatesLayerNums.Select(e => (JsonNode)e)]),
            ["hidden_dims"] = new JsonArray([.. d.HiddenDims.Select(e => (JsonNode)e)]),
            ["expansion_factor"] = d.ExpansionFactor,
            ["dropout_rate"] = tah.DeciderDropout,
            ["normalize_input"] = d.NormalizeInput,
            ["threshold"] = d.Threshold,
            ["max_iter"] = 2,
            ["dtype"] = new JsonObject { ["__dtype__"] = true, ["__str__"] = "torch.float32" },
        };
        WriteJson(Path.Combine(directory, "tah_config.json"), new JsonObject
        {
            ["embedding_key"] = "model.embed_tokens",
            ["max_iter"] = 2,
            ["iter_decider"] = "MLPIterDecider",
            ["iter_decider_kwargs"] = kwargs,
            ["eval_iter_decider"] = "iter_decider",
            ["eval_iter_decider_kwargs"] = new JsonObject(),
            ["input_updater_kwargs"] = new JsonObject { ["topk"] = tah.InputTopK },
            ["adapter"] = "lora",
            ["adapter_kwargs"] = new JsonObject
            {
                ["r"] = tah.Lora.Rank,
                ["lora_alpha"] = tah.Lora.Alpha,
                ["lora_dropout"] = tah.LoraDropout,
                ["target_modules"] = new JsonArray([.. tah.Lora.TargetModules.Select(m => (JsonNode)m)]),
                ["bias"] = "none",
            },
        });

        Directory.CreateDirectory(Path.Combine(directory, "lora"));
        WriteJson(Path.Combine(directory, "lora", "adapter_config.json"), new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["base_model_name_or_path"] = null,
            ["r"] = tah.Lora.Rank,
            ["lora_alpha"] = tah.Lora.Alpha,
            ["lora_dropout"] = tah.LoraDropout,
            ["target_modules"] = new JsonArray([.. tah.Lora.TargetModules.Select(m => (JsonNode)m)]),
            ["bias"] = "none",
            ["use_rslora"] = tah.Lora.UseRsLora,
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
        });

        using (no_grad())
        {
            SafeTensorsWriter.Write(Path.Combine(directory, "lora", "adapter_model.safetensors"),
                model.Lora.Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value)), PtMetadata);

            // The decider's state dict, saved as the reference's save_iter_decider does.
            var state = new PyDict(isOrderedDict: true);
            state["threshold"] = tensor((float)d.Threshold);
            foreach (var (name, _, _) in new DeciderLayout(d).Parameters)
            {
                state[name] = model.Decider[name].detach();
            }

            DeciderFile.Save(directory, state, kwargs, ScalarType.Float32);
            ((Tensor)state["threshold"]!).Dispose();
        }
    }

    /// <summary>The projections of layer i: checkpoint name (without .weight), out and in sizes.</summary>
    internal static IEnumerable<(string Name, long Out, long In)> Projections(Qwen3Config c, int layer)
    {
        long h = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        string p = $"model.layers.{layer}";
        foreach (string m in AttentionProjections)
        {
            yield return ($"{p}.self_attn.{m}", m == "o_proj" ? h : m == "q_proj" ? q : kv, m == "o_proj" ? q : h);
        }

        foreach (string m in MlpProjections)
        {
            yield return ($"{p}.mlp.{m}", m == "down_proj" ? h : c.IntermediateSize, m == "down_proj" ? c.IntermediateSize : h);
        }
    }

    private static Dictionary<string, long[]> BaseShapes(Qwen3Config c)
    {
        var shapes = new Dictionary<string, long[]>
        {
            ["model.embed_tokens.weight"] = [c.VocabSize, c.HiddenSize],
            ["model.norm.weight"] = [c.HiddenSize],
            ["lm_head.weight"] = [c.VocabSize, c.HiddenSize],
        };
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            foreach (var (name, outSize, inSize) in Projections(c, i))
            {
                shapes[$"{name}.weight"] = [outSize, inSize];
            }

            string p = $"model.layers.{i}";
            shapes[$"{p}.input_layernorm.weight"] = [c.HiddenSize];
            shapes[$"{p}.post_attention_layernorm.weight"] = [c.HiddenSize];
            shapes[$"{p}.self_attn.q_norm.weight"] = [c.HeadDim];
            shapes[$"{p}.self_attn.k_norm.weight"] = [c.HeadDim];
        }

        return shapes;
    }

    /// <summary>Every base weight name, in the order model.safetensors stores them (and training creates them).</summary>
    private static IEnumerable<string> ExpectedBaseNames(Qwen3Config c)
    {
        yield return "model.embed_tokens.weight";
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}";
            yield return $"{p}.input_layernorm.weight";
            foreach (var (name, _, _) in Projections(c, i))
            {
                yield return $"{name}.weight";
            }

            yield return $"{p}.self_attn.q_norm.weight";
            yield return $"{p}.self_attn.k_norm.weight";
            yield return $"{p}.post_attention_layernorm.weight";
        }

        yield return "model.norm.weight";
        if (!c.TieWordEmbeddings)
        {
            yield return "lm_head.weight";
        }
    }

    internal static void WriteJson(string path, JsonNode node) =>
        File.WriteAllText(path, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
}
