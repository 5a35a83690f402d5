using System.CommandLine;
using TaH.Engine.Config;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Training;

namespace TaH.Server.Cli;

/// <summary>Options several verbs share: the model, the iteration policy, the sampling knobs.</summary>
internal static class CommonOptions
{
    public static Option<string> Model(bool required = true) => new("--model", "-m")
    {
        Description = required
            ? "checkpoint directory (a TaH release such as TaH-plus-1.7B, or a plain Qwen3 one)"
            : $"checkpoint directory (a TaH release such as TaH-plus-1.7B, or a plain Qwen3 one; default: the bundled demo model {DemoModel.FolderName})",
        Required = required,
    };

    /// <summary>The directory given, else the bundled demo model.</summary>
    public static string ModelOrDemo(string? directory) =>
        directory ?? DemoModel.DefaultDirectory
        ?? throw new ArgumentException($"--model is required: the bundled demo model (models/{DemoModel.FolderName}) is not installed");

    public static Option<string> Policy() => new("--policy")
    {
        Description = "iteration policy: decider (TaH), never (Always-1, the base model) or always (Always-2)",
        DefaultValueFactory = _ => "decider",
    };

    public static Option<double?> Threshold() => new("--threshold")
    {
        Description = "override the decider's threshold (continue when p > threshold)",
    };

    public static IterationPolicy ReadPolicy(ParseResult result, Option<string> policy, Option<double?> threshold) =>
        IterationPolicy.Parse(result.GetValue(policy)!, result.GetValue(threshold));
}

/// <summary>The sampling flags, defaulting to the model's generation_config.json as vLLM does.</summary>
internal sealed class SamplingOptions
{
    public Option<float?> Temperature { get; } = new("--temperature") { Description = "0 = greedy" };

    public Option<float?> TopP { get; } = new("--top-p");

    public Option<int?> TopK { get; } = new("--top-k");

    public Option<float?> MinP { get; } = new("--min-p");

    public Option<float> PresencePenalty { get; } = new("--presence-penalty");

    public Option<float> FrequencyPenalty { get; } = new("--frequency-penalty");

    public Option<float?> RepetitionPenalty { get; } = new("--repetition-penalty");

    public Option<long?> Seed { get; } = new("--seed");

    public Option<bool> Greedy { get; } = new("--greedy") { Description = "same as --temperature 0" };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Temperature, TopP, TopK, MinP, PresencePenalty, FrequencyPenalty, RepetitionPenalty, Seed, Greedy })
        {
            command.Options.Add(option);
        }
    }

    /// <summary>The flags, unset ones from the model's defaults; the engine checks their ranges when the request is added.</summary>
    public SamplingParams Read(ParseResult result, GenerationConfig defaults) => new()
    {
        Temperature = result.GetValue(Greedy) ? 0f : result.GetValue(Temperature) ?? (float?)defaults.Temperature ?? 1f,
        TopP = result.GetValue(TopP) ?? (float?)defaults.TopP ?? 1f,
        TopK = result.GetValue(TopK) ?? defaults.TopK ?? 0,
        MinP = result.GetValue(MinP) ?? (float?)defaults.MinP ?? 0f,
        PresencePenalty = result.GetValue(PresencePenalty),
        FrequencyPenalty = result.GetValue(FrequencyPenalty),
        RepetitionPenalty = result.GetValue(RepetitionPenalty) ?? (float?)defaults.RepetitionPenalty ?? 1f,
        Seed = result.GetValue(Seed),
    };
}
