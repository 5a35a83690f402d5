using System.Text.Json.Nodes;
using TaH.Engine.Checkpoints;

namespace TaH.Engine.Config;

/// <summary>
/// <c>tah_config.json</c>: how deep tokens may go, the decider and the soft-input width. Keys this
/// engine does not use (legacy <c>input_updater</c>, <c>iter_attention_mode</c>, losses) are ignored.
/// </summary>
public sealed record TaHConfig
{
    public const string SupportedDecider = "MLPIterDecider";

    /// <summary>The deepest level a token may reach (2 in the released models).</summary>
    public required int MaxIter { get; init; }

    /// <summary>k of the top-k softmax that builds the soft input of a latent iteration.</summary>
    public int InputTopK { get; init; } = 100;

    /// <summary>Decider constructor arguments, or null when the file names none (then <c>iter_decider.bin</c>'s own are used).</summary>
    public DeciderConfig? Decider { get; init; }

    public static TaHConfig Load(string path)
    {
        var json = JsonConfigReader.Load(path);

        int maxIter = json.Int("max_iter", 2);
        if (maxIter < 1)
        {
            throw json.Bad("max_iter", "at least 1");
        }

        string adapter = json.String("adapter", "lora");
        if (adapter != "lora")
        {
            throw new CheckpointException(path, $"adapter '{adapter}' is not supported (only lora)");
        }

        // At inference the reference uses eval_iter_decider when it names a class; the released
        // checkpoints alias it to the trained decider ("iter_decider").
        string decider = json.String("iter_decider", SupportedDecider);
        string? evalDecider = json.OptionalString("eval_iter_decider");
        if (evalDecider is not null && !evalDecider.StartsWith("iter_decider", StringComparison.Ordinal))
        {
            decider = evalDecider;
        }

        if (decider != SupportedDecider)
        {
            throw new CheckpointException(path, $"iter_decider '{decider}' is not supported for inference (only {SupportedDecider})");
        }

        var kwargs = json.Section("iter_decider_kwargs");
        return new TaHConfig
        {
            MaxIter = maxIter,
            InputTopK = json.Section("input_updater_kwargs").Int("topk", 100),
            Decider = kwargs.Root.Count == 0 ? null : DeciderConfig.From(kwargs, maxIter),
        };
    }
}

/// <summary>Constructor arguments of <c>MLPIterDecider</c>.</summary>
public sealed record DeciderConfig
{
    public required int TopK { get; init; }

    public required int HiddenStatesSize { get; init; }

    /// <summary>Entries of the Hugging Face <c>hidden_states</c> tuple fed to the decider.</summary>
    public required int[] HiddenStatesLayerNums { get; init; }

    public required int[] HiddenDims { get; init; }

    public required int ExpansionFactor { get; init; }

    public required bool NormalizeInput { get; init; }

    public required double Threshold { get; init; }

    public required int MaxIter { get; init; }

    /// <summary>The dtype the decider was trained in ("bfloat16", ...), from the serialised torch dtype.</summary>
    public string DType { get; init; } = "bfloat16";

    /// <summary>Defaults are those of the reference constructor.</summary>
    internal static DeciderConfig From(JsonConfigReader kwargs, int maxIter)
    {
        var config = new DeciderConfig
        {
            TopK = kwargs.Int("topk", 100),
            HiddenStatesSize = kwargs.Int("hidden_states_size", 1024),
            HiddenStatesLayerNums = kwargs.IntList("hidden_states_layer_nums", [16, 20, 24, 28]),
            HiddenDims = kwargs.IntList("hidden_dims", [256, 512, 256]),
            ExpansionFactor = kwargs.Int("expansion_factor", 4),
            NormalizeInput = kwargs.Bool("normalize_input", false),
            Threshold = kwargs.Double("threshold", 0.5),
            MaxIter = kwargs.Int("max_iter", maxIter),
            DType = kwargs.TorchDtype("dtype", "bfloat16"),
        };
        if (config.HiddenDims.Length == 0 || config.HiddenDims.Any(d => d <= 0))
        {
            throw kwargs.Bad("hidden_dims", "a non-empty list of positive integers");
        }

        if (config.TopK <= 0)
        {
            throw kwargs.Bad("topk", "a positive integer");
        }

        return config;
    }

    /// <summary>Reads the arguments <c>iter_decider.bin</c> was built with (its <c>init_args</c>).</summary>
    internal static DeciderConfig FromInitArgs(string path, JsonObject initArgs, int maxIter) =>
        From(JsonConfigReader.FromObject(path, initArgs), maxIter);
}

/// <summary>The PEFT <c>adapter_config.json</c> of the LoRA used at depths 2 and beyond.</summary>
public sealed record LoraConfig
{
    public static readonly string[] AllLinear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    public required int Rank { get; init; }

    public required double Alpha { get; init; }

    public required bool UseRsLora { get; init; }

    public required string[] TargetModules { get; init; }

    public double Scaling => UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    public static LoraConfig Load(string path)
    {
        var json = JsonConfigReader.Load(path);
        string peftType = json.String("peft_type", "LORA");
        if (!peftType.Equals("LORA", StringComparison.OrdinalIgnoreCase))
        {
            throw new CheckpointException(path, $"peft_type '{peftType}' is not supported (only LORA)");
        }

        int rank = json.Int("r");
        if (rank <= 0)
        {
            throw json.Bad("r", "a positive integer");
        }

        if (json.String("bias", "none") != "none")
        {
            throw new CheckpointException(path, "LoRA bias terms are not supported (bias must be 'none')");
        }

        string[] targets = json.Root["target_modules"] switch
        {
            JsonValue v when v.ToString() == "all-linear" => AllLinear,
            JsonArray a => [.. a.Select(n => n?.ToString() ?? "")],
            null => AllLinear,
            _ => throw json.Bad("target_modules", "a list of module names or \"all-linear\""),
        };
        return new LoraConfig
        {
            Rank = rank,
            Alpha = json.Double("lora_alpha", rank),
            UseRsLora = json.Bool("use_rslora", false),
            TargetModules = targets,
        };
    }
}
