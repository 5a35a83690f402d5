using TaH.Engine.Config;
using TaH.Engine.Kv;
using TaH.Engine.Model;
using TaH.Engine.TaH;

namespace TaH.Engine.Generation;

/// <summary>
/// The served model as the outside sees it, built by the engine: what it is (depth, decider,
/// vocabulary), what it runs (policies, context, the KV pool's budget) and the defaults it was
/// released with (sampling, EOS ids). Read-only: a server plans requests and describes the
/// model from this, never from the model's internals.
/// </summary>
public sealed record ServedModel
{
    /// <summary>The checkpoint directory.</summary>
    public required string Directory { get; init; }

    public required int Layers { get; init; }

    /// <summary>How the linear layers' weights are held (fp32, bf16, q8_0, q4_0).</summary>
    public required WeightFormat Weights { get; init; }

    /// <summary>How the decider's are (<c>--decider-weights</c>); null without a decider.</summary>
    public WeightFormat? DeciderWeights { get; init; }

    /// <summary>Memory the weights hold: base, head and decider.</summary>
    public required long WeightBytes { get; init; }

    /// <summary>The deepest level a token can reach (max_iter); 1 for a plain Qwen3.</summary>
    public required int MaxDepth { get; init; }

    /// <summary>The decider's trained threshold; null when the checkpoint has no decider.</summary>
    public required double? DeciderThreshold { get; init; }

    public bool HasDecider => DeciderThreshold is not null;

    public required int VocabSize { get; init; }

    /// <summary>The longest sequence, prompt plus output.</summary>
    public required int MaxModelLength { get; init; }

    /// <summary>The policies this model can run (decider, never, always), with each refusal's reason for the others.</summary>
    public required IReadOnlyDictionary<PolicyKind, string?> PolicySupport { get; init; }

    public IEnumerable<PolicyKind> Policies => PolicySupport.Where(p => p.Value is null).Select(p => p.Key);

    /// <summary>The sampling defaults of generation_config.json, for knobs a request leaves unset.</summary>
    public required GenerationConfig SamplingDefaults { get; init; }

    /// <summary>Token ids that end a generation (generation_config.json's, else config.json's).</summary>
    public required IReadOnlyList<int> EosTokenIds { get; init; }

    /// <summary>The most parallel samples (n) one request may ask for.</summary>
    public required int MaxSamples { get; init; }

    /// <summary>The KV pool: how many blocks a request needs, how many output tokens or samples fit.</summary>
    public required KvBudget Kv { get; init; }

    /// <summary>Null when the model can run <paramref name="policy"/>; otherwise why not.</summary>
    public string? Supports(IterationPolicy policy) => PolicySupport[policy.Kind];

    internal static ServedModel Describe(TaHModel model, KvBudget kv, int maxModelLength, int maxSamples) => new()
    {
        Directory = model.Directory,
        Layers = model.Config.NumHiddenLayers,
        Weights = model.Base.Weights,
        WeightBytes = model.WeightBytes,
        MaxDepth = model.MaxDepth,
        DeciderThreshold = model.Decider?.Threshold,
        DeciderWeights = model.Decider?.Weights,
        VocabSize = model.Config.VocabSize,
        MaxModelLength = maxModelLength,
        PolicySupport = Enum.GetValues<PolicyKind>().ToDictionary(k => k, k => model.Supports(new IterationPolicy(k))),
        SamplingDefaults = model.Generation,
        EosTokenIds = model.EosTokenIds,
        MaxSamples = maxSamples,
        Kv = kv,
    };
}
