namespace TaH.Engine.Sampling;

/// <summary>
/// The user-facing sampling knobs of one request, with OpenAI/vLLM meanings. Immutable; the
/// engine's AdmissionGate calls <see cref="Validate"/> once before a request runs.
/// </summary>
public sealed record SamplingParams
{
    /// <summary>
    /// Upper bound of <see cref="Temperature"/>. OpenAI's limit; vLLM accepts any value, but above 2
    /// a 152k-token vocabulary is sampled close to uniformly, which is noise rather than text.
    /// </summary>
    public const float MaxTemperature = 2f;

    /// <summary>Bound of <see cref="PresencePenalty"/> and <see cref="FrequencyPenalty"/> (OpenAI).</summary>
    public const float MaxPenalty = 2f;

    /// <summary>Most alternatives <see cref="Logprobs"/> may ask for (OpenAI's top_logprobs limit).</summary>
    public const int MaxLogprobs = 20;

    public static SamplingParams Default { get; } = new();

    public static SamplingParams Greedy { get; } = new() { Temperature = 0f };

    /// <summary>Divides the logits; 0 means greedy (argmax after penalties). Range [0, 2].</summary>
    public float Temperature { get; init; } = 1f;

    /// <summary>Nucleus sampling mass, in (0, 1]; 1 turns it off.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Keeps the k most probable tokens; 0 or -1 turns it off.</summary>
    public int TopK { get; init; }

    /// <summary>Drops tokens less probable than MinP times the most probable one; in [0, 1], 0 = off.</summary>
    public float MinP { get; init; }

    /// <summary>Subtracted once from the logit of every token generated so far; in [-2, 2].</summary>
    public float PresencePenalty { get; init; }

    /// <summary>Subtracted from a logit once per earlier generation of that token; in [-2, 2].</summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>
    /// HF/vLLM repetition penalty for tokens of the prompt or the output: a positive logit is divided
    /// by it, a negative one multiplied. Must be &gt; 0; 1 turns it off.
    /// </summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>Seed of the sampler's random stream; null draws a random seed.</summary>
    public long? Seed { get; init; }

    /// <summary>Number of most probable alternatives to report per token (0..20); null reports none.</summary>
    public int? Logprobs { get; init; }

    public bool IsGreedy => Temperature == 0f;

    /// <summary>
    /// Throws <see cref="ArgumentException"/> whose ParamName is the OpenAI parameter name
    /// ("temperature", "top_p", ...) and whose message gives the allowed range.
    /// </summary>
    public void Validate()
    {
        // Comparisons are written so that NaN fails them.
        if (!(Temperature >= 0f && Temperature <= MaxTemperature))
        {
            throw Invalid("temperature", Temperature, "must be in [0, 2] (0 means greedy)");
        }

        if (!(TopP > 0f && TopP <= 1f))
        {
            throw Invalid("top_p", TopP, "must be in (0, 1] (1 turns it off)");
        }

        if (TopK < -1)
        {
            throw Invalid("top_k", TopK, "must be -1 or 0 (off) or at least 1");
        }

        if (!(MinP >= 0f && MinP <= 1f))
        {
            throw Invalid("min_p", MinP, "must be in [0, 1] (0 turns it off)");
        }

        if (!(PresencePenalty >= -MaxPenalty && PresencePenalty <= MaxPenalty))
        {
            throw Invalid("presence_penalty", PresencePenalty, "must be in [-2, 2]");
        }

        if (!(FrequencyPenalty >= -MaxPenalty && FrequencyPenalty <= MaxPenalty))
        {
            throw Invalid("frequency_penalty", FrequencyPenalty, "must be in [-2, 2]");
        }

        if (!(RepetitionPenalty > 0f && float.IsFinite(RepetitionPenalty)))
        {
            throw Invalid("repetition_penalty", RepetitionPenalty, "must be a finite number > 0 (1 turns it off)");
        }

        if (Logprobs is { } n && (n < 0 || n > MaxLogprobs))
        {
            throw Invalid("logprobs", n, "must be in [0, 20]");
        }
    }

    private static ArgumentException Invalid(string name, object value, string rule) =>
        new(FormattableString.Invariant($"{name} {rule}, got {value}."), name);
}
