using TaH.Engine.Config;
using TaH.Engine.Sampling;

namespace TaH.Server.Api.Reading;

/// <summary>
/// The sampling knobs of a request, each unset one taken from the model's generation_config.json
/// as vLLM does. Their ranges are the engine's to check (its admission gate).
/// </summary>
internal static class SamplingReader
{
    public static SamplingParams Read(GenerationRequestBody body, GenerationConfig defaults, int? logprobs) => new()
    {
        Temperature = (float)(body.Temperature ?? defaults.Temperature ?? 1.0),
        TopP = (float)(body.TopP ?? defaults.TopP ?? 1.0),
        TopK = body.TopK ?? defaults.TopK ?? 0,
        MinP = (float)(body.MinP ?? defaults.MinP ?? 0.0),
        PresencePenalty = (float)(body.PresencePenalty ?? 0),
        FrequencyPenalty = (float)(body.FrequencyPenalty ?? 0),
        RepetitionPenalty = (float)(body.RepetitionPenalty ?? defaults.RepetitionPenalty ?? 1.0),
        Seed = body.Seed,
        Logprobs = logprobs,
    };
}
