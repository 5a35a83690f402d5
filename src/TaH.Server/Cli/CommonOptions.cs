using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using TaH.Engine.Config;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Training;
using TaH.Training.Reporting;

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

    /// <summary>
    /// Loads a model for a verb: a progress bar on a terminal while a kernel format converts the
    /// weights, then one line with what they take.
    /// </summary>
    public static TaHModel Load(string directory, ModelOptions options)
    {
        if (options.Weights == WeightFormat.Fp32 && options.Decider == WeightFormat.Fp32)
        {
            return ModelLoader.Load(directory, options);
        }

        string name = WeightFormats.Name(options.Weights, options.Decider);
        ProgressBar? bar = null;
        var clock = Stopwatch.StartNew();
        var model = ModelLoader.Load(directory, options, Console.IsErrorRedirected ? null : p => (bar ??= new ProgressBar($"{name} weights", p.Total)).Update(p.Done));
        bar?.Done();
        long bytes = model.WeightBytes;
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name} weights: {bytes / 1e6:F0} MB (base, head and decider), loaded in {clock.Elapsed.TotalSeconds:F1} s"));
        return model;
    }
}

/// <summary><c>--weights</c> and <c>--decider-weights</c>: how the CPU holds the linear layers.</summary>
internal sealed class WeightOptions
{
    public Option<string?> Weights { get; } = new("--weights")
    {
        Description = "how the CPU holds the linear layers' weights: fp32 (default), bf16, q8_0 (GGUF's 8-bit blocks, int8 kernels) or q4_0 (4-bit blocks); converted at load",
    };

    public Option<string?> Decider { get; } = new("--decider-weights")
    {
        Description = "the decider MLP's format, one of the same (default: the model's)",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Weights);
        command.Options.Add(Decider);
    }

    public bool AnyGiven(ParseResult result) => result.GetValue(Weights) is not null || result.GetValue(Decider) is not null;

    public ModelOptions Read(ParseResult result, string device) => ModelOptions.Parse(device, result.GetValue(Weights), result.GetValue(Decider));
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
