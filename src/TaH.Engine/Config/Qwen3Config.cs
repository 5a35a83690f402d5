using System.Text.Json.Nodes;
using TaH.Engine.Checkpoints;

namespace TaH.Engine.Config;

/// <summary>The Hugging Face <c>config.json</c> of a Qwen3 causal LM, as far as the forward needs it.</summary>
public sealed record Qwen3Config
{
    public const string Architecture = "Qwen3ForCausalLM";

    public required int VocabSize { get; init; }

    public required int HiddenSize { get; init; }

    public required int IntermediateSize { get; init; }

    public required int NumHiddenLayers { get; init; }

    public required int NumAttentionHeads { get; init; }

    public required int NumKeyValueHeads { get; init; }

    public required int HeadDim { get; init; }

    public double RmsNormEps { get; init; } = 1e-6;

    public double RopeTheta { get; init; } = 1_000_000;

    public int MaxPositionEmbeddings { get; init; } = 40960;

    public bool TieWordEmbeddings { get; init; }

    public bool AttentionBias { get; init; }

    /// <summary>The dtype the weights were saved in ("bfloat16", "float32", ...), as declared.</summary>
    public string TorchDtype { get; init; } = "bfloat16";

    public int[] EosTokenIds { get; init; } = [];

    public int? BosTokenId { get; init; }

    public static Qwen3Config Load(string path)
    {
        var json = JsonConfigReader.Load(path);

        var architectures = json.Root["architectures"] as JsonArray;
        string? architecture = architectures?.FirstOrDefault()?.GetValue<string>();
        string modelType = json.String("model_type", "");
        if (architecture != Architecture && !(architecture is null && modelType == "qwen3"))
        {
            string found = architecture ?? (modelType.Length > 0 ? $"model_type '{modelType}'" : "none declared");
            throw new CheckpointException(path, $"unknown architecture '{found}'; supported: {Architecture}");
        }

        string act = json.String("hidden_act", "silu");
        if (act != "silu")
        {
            throw new CheckpointException(path, $"hidden_act '{act}' is not supported (Qwen3 uses silu)");
        }

        if (json.Root["rope_scaling"] is JsonObject scaling)
        {
            string type = scaling["rope_type"]?.ToString() ?? scaling["type"]?.ToString() ?? "?";
            if (type != "default")
            {
                throw new CheckpointException(path, $"rope_scaling type '{type}' is not supported");
            }
        }

        if (json.Bool("use_sliding_window", false))
        {
            throw new CheckpointException(path, "use_sliding_window is not supported");
        }

        int hidden = Positive(json, "hidden_size");
        int heads = Positive(json, "num_attention_heads");
        int kvHeads = json.Has("num_key_value_heads") ? Positive(json, "num_key_value_heads") : heads;
        if (heads % kvHeads != 0)
        {
            throw new CheckpointException(path, $"num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kvHeads})");
        }

        int headDim = json.Has("head_dim") ? Positive(json, "head_dim") : hidden / heads;
        if (headDim % 2 != 0)
        {
            throw new CheckpointException(path, $"head_dim ({headDim}) must be even for rotary embeddings");
        }

        int? bos = json.Has("bos_token_id") ? json.Int("bos_token_id") : null;
        return new Qwen3Config
        {
            VocabSize = Positive(json, "vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = Positive(json, "intermediate_size"),
            NumHiddenLayers = Positive(json, "num_hidden_layers"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            RmsNormEps = json.Double("rms_norm_eps", 1e-6),
            RopeTheta = json.Double("rope_theta", 1_000_000),
            MaxPositionEmbeddings = json.Int("max_position_embeddings", 40960),
            TieWordEmbeddings = json.Bool("tie_word_embeddings", false),
            AttentionBias = json.Bool("attention_bias", false),
            TorchDtype = json.String("torch_dtype", json.String("dtype", "bfloat16")),
            EosTokenIds = json.IntOrIntList("eos_token_id"),
            BosTokenId = bos,
        };
    }

    private static int Positive(JsonConfigReader json, string key)
    {
        int value = json.Int(key);
        return value > 0 ? value : throw json.Bad(key, "a positive integer");
    }
}
