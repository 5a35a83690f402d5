namespace TaH.Engine.Config;

/// <summary>
/// <c>generation_config.json</c>: the stop ids and the sampling defaults the model was released with
/// (used when a request leaves a knob unset, as vLLM does).
/// </summary>
public sealed record GenerationConfig
{
    public int[] EosTokenIds { get; init; } = [];

    public double? Temperature { get; init; }

    public double? TopP { get; init; }

    public int? TopK { get; init; }

    public double? MinP { get; init; }

    public double? RepetitionPenalty { get; init; }

    public static GenerationConfig Load(string path)
    {
        var json = JsonConfigReader.LoadIfExists(path);
        if (json is null)
        {
            return new GenerationConfig();
        }

        bool doSample = json.Bool("do_sample", true);
        return new GenerationConfig
        {
            EosTokenIds = json.IntOrIntList("eos_token_id"),
            Temperature = !doSample ? 0 : json.Has("temperature") ? json.Double("temperature") : null,
            TopP = json.Has("top_p") ? json.Double("top_p") : null,
            TopK = json.Has("top_k") ? json.Int("top_k") : null,
            MinP = json.Has("min_p") ? json.Double("min_p") : null,
            RepetitionPenalty = json.Has("repetition_penalty") ? json.Double("repetition_penalty") : null,
        };
    }
}
