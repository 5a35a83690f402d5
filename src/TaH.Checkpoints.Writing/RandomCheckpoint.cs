using System.Text.Json;
using System.Text.Json.Nodes;
using TaH.Engine.Checkpoints;
using TaH.Engine.Config;
using TaH.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace TaH.Checkpoints.Writing;

/// <summary>The dimensions of a Qwen3-architecture model.</summary>
public sealed record ModelShape(string Name, int VocabSize, int HiddenSize, int IntermediateSize, int Layers, int Heads, int KvHeads, int HeadDim, bool TiedEmbeddings)
{
    public static ModelShape Qwen3_0_6B { get; } = new("qwen3-0.6b", 151936, 1024, 3072, 28, 16, 8, 128, true);

    public static ModelShape Qwen3_1_7B { get; } = new("qwen3-1.7b", 151936, 2048, 6144, 28, 16, 8, 128, true);

    /// <summary>The size of the reference fixtures.</summary>
    public static ModelShape Tiny { get; } = new("tiny", 512, 64, 128, 4, 4, 2, 16, true);

    /// <summary>Tiny, with Qwen3's vocabulary so that the real tokenizer drives it.</summary>
    public static ModelShape TinyQwen3Vocab { get; } = new("tiny-qwen3-vocab", 151936, 64, 128, 4, 4, 2, 16, true);

    public static IReadOnlyList<ModelShape> Known { get; } = [Qwen3_0_6B, Qwen3_1_7B, Tiny, TinyQwen3Vocab];

    public static ModelShape Parse(string name) =>
        Known.FirstOrDefault(s => s.Name == name.ToLowerInvariant())
        ?? throw new ArgumentException($"unknown shape '{name}' (known: {string.Join(", ", Known.Select(s => s.Name))})");
}

/// <summary>
/// Writes a random-weight checkpoint in the released TaH layout (safetensors base, PEFT LoRA,
/// iter_decider.bin, tah_config.json): what benchmarks and tests use where no real weights may be
/// downloaded. The decider and LoRA follow the TaH-plus-1.7B recipe, scaled to the shape.
/// </summary>
public static class RandomCheckpoint
{
    public static void Write(string directory, ModelShape shape, long seed = 0, ScalarType dtype = ScalarType.BFloat16, int loraRank = 32)
    {
        Directory.CreateDirectory(Path.Combine(directory, "lora"));
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)seed);

        Tensor Normal(double std, params long[] dims) => normal(0, std, dims, generator: generator).to(dtype);
        Tensor Norm(long size) => ones(size).add_(normal(0, 0.02, [size], generator: generator), PinnedScalars.One).to(dtype);

        int h = shape.HiddenSize, hd = shape.HeadDim, q = shape.Heads * hd, kv = shape.KvHeads * hd;
        var weights = new List<KeyValuePair<string, Tensor>>
        {
            new("model.embed_tokens.weight", Normal(0.02, shape.VocabSize, h)),
            new("model.norm.weight", Norm(h)),
        };
        if (!shape.TiedEmbeddings)
        {
            weights.Add(new("lm_head.weight", Normal(0.02, shape.VocabSize, h)));
        }

        var lora = new List<KeyValuePair<string, Tensor>>();
        for (int i = 0; i < shape.Layers; i++)
        {
            string p = $"model.layers.{i}";
            (string Name, long Out, long In)[] projections =
            [
                ("self_attn.q_proj", q, h), ("self_attn.k_proj", kv, h), ("self_attn.v_proj", kv, h), ("self_attn.o_proj", h, q),
                ("mlp.gate_proj", shape.IntermediateSize, h), ("mlp.up_proj", shape.IntermediateSize, h), ("mlp.down_proj", h, shape.IntermediateSize),
            ];
            foreach (var (name, outSize, inSize) in projections)
            {
                weights.Add(new($"{p}.{name}.weight", Normal(0.02, outSize, inSize)));
                lora.Add(new($"base_model.model.{p}.{name}.lora_A.weight", Normal(1.0 / Math.Sqrt(inSize), loraRank, inSize)));
                lora.Add(new($"base_model.model.{p}.{name}.lora_B.weight", Normal(0.02, outSize, loraRank)));
            }

            weights.Add(new($"{p}.input_layernorm.weight", Norm(h)));
            weights.Add(new($"{p}.post_attention_layernorm.weight", Norm(h)));
            weights.Add(new($"{p}.self_attn.q_norm.weight", Norm(hd)));
            weights.Add(new($"{p}.self_attn.k_norm.weight", Norm(hd)));
        }

        SafeTensorsWriter.Write(Path.Combine(directory, "model.safetensors"), weights, new Dictionary<string, string> { ["format"] = "pt" });
        SafeTensorsWriter.Write(Path.Combine(directory, "lora", "adapter_model.safetensors"), lora, new Dictionary<string, string> { ["format"] = "pt" });

        // The decider reads four hidden-state entries spread over the depth, as the 1.7B recipe does.
        int[] entries = [.. new[] { 2, shape.Layers * 10 / 28, shape.Layers * 18 / 28, shape.Layers - 2 }.Select(e => Math.Clamp(e, 0, shape.Layers)).Distinct()];
        int[] hiddenDims = shape.HiddenSize >= 512 ? [512, 512, 512, 512, 512, 512] : [32, 48, 48];
        int topK = Math.Min(100, shape.VocabSize);
        var deciderArgs = new JsonObject
        {
            ["topk"] = topK,
            ["hidden_states_size"] = h,
            ["hidden_states_layer_nums"] = new JsonArray([.. entries.Select(e => (JsonNode)e)]),
            ["hidden_dims"] = new JsonArray([.. hiddenDims.Select(d => (JsonNode)d)]),
            ["expansion_factor"] = shape.HiddenSize >= 512 ? 4 : 2,
            ["dropout_rate"] = 0.1,
            ["normalize_input"] = false,
            ["threshold"] = 0.9,
            ["max_iter"] = 2,
            ["dtype"] = new JsonObject { ["__dtype__"] = true, ["__str__"] = "torch.bfloat16" },
        };
        DeciderFile.Save(directory, DeciderState(deciderArgs, h, entries, hiddenDims, topK, generator), deciderArgs, ScalarType.BFloat16);

        WriteJson(Path.Combine(directory, "config.json"), new JsonObject
        {
            ["architectures"] = new JsonArray("Qwen3ForCausalLM"),
            ["model_type"] = "qwen3",
            ["vocab_size"] = shape.VocabSize,
            ["hidden_size"] = h,
            ["intermediate_size"] = shape.IntermediateSize,
            ["num_hidden_layers"] = shape.Layers,
            ["num_attention_heads"] = shape.Heads,
            ["num_key_value_heads"] = shape.KvHeads,
            ["head_dim"] = hd,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = 40960,
            ["rms_norm_eps"] = 1e-6,
            ["rope_theta"] = 1_000_000.0,
            ["tie_word_embeddings"] = shape.TiedEmbeddings,
            ["torch_dtype"] = dtype == ScalarType.BFloat16 ? "bfloat16" : dtype == ScalarType.Float16 ? "float16" : "float32",
            ["bos_token_id"] = 151643 % shape.VocabSize,
            ["eos_token_id"] = 151645 % shape.VocabSize,
        });
        WriteJson(Path.Combine(directory, "generation_config.json"), new JsonObject { ["eos_token_id"] = 151645 % shape.VocabSize });
        WriteJson(Path.Combine(directory, "tah_config.json"), new JsonObject
        {
            ["embedding_key"] = "model.embed_tokens",
            ["max_iter"] = 2,
            ["iter_decider"] = "MLPIterDecider",
            ["iter_decider_kwargs"] = deciderArgs.DeepClone(),
            ["eval_iter_decider"] = "iter_decider",
            ["input_updater_kwargs"] = new JsonObject { ["topk"] = topK },
            ["adapter"] = "lora",
            ["adapter_kwargs"] = new JsonObject { ["r"] = loraRank, ["lora_alpha"] = 2 * loraRank, ["lora_dropout"] = 0.1, ["target_modules"] = "all-linear" },
        });
        WriteJson(Path.Combine(directory, "lora", "adapter_config.json"), new JsonObject
        {
            ["peft_type"] = "LORA",
            ["r"] = loraRank,
            ["lora_alpha"] = 2 * loraRank,
            ["lora_dropout"] = 0.1,
            ["target_modules"] = new JsonArray("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
            ["bias"] = "none",
            ["use_rslora"] = false,
            ["task_type"] = "CAUSAL_LM",
        });
    }

    /// <summary>The decider's state dict: Kaiming-normal weights as the reference's constructor makes them.</summary>
    private static PyDict DeciderState(JsonObject args, int hidden, int[] entries, int[] hiddenDims, int topK, Generator generator)
    {
        var layout = new DeciderLayout(new DeciderConfig
        {
            TopK = topK,
            HiddenStatesSize = hidden,
            HiddenStatesLayerNums = entries,
            HiddenDims = hiddenDims,
            ExpansionFactor = (int)args["expansion_factor"]!,
            NormalizeInput = (bool)args["normalize_input"]!,
            Threshold = (double)args["threshold"]!,
            MaxIter = (int)args["max_iter"]!,
        });
        var state = new PyDict(isOrderedDict: true);
        state["threshold"] = tensor(0.5f);
        foreach (var p in layout.Parameters)
        {
            state[p.Name] = p.IsBias ? zeros(p.Shape)
                : p.IsNorm ? ones(p.Shape)
                : normal(0, Math.Sqrt(2.0 / p.Shape[1]), p.Shape, generator: generator);
        }

        return state;
    }

    private static void WriteJson(string path, JsonNode node) =>
        File.WriteAllText(path, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
}
