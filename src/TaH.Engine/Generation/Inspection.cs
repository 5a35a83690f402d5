using System.Text.Json;
using TaH.Engine.Kv;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;

namespace TaH.Engine.Generation;

/// <summary>One policy's golden record: the prompt positions, then greedy decoding.</summary>
public sealed record Inspection(
    int[] PromptIds,
    IterationPolicy Policy,
    double? Threshold,
    PositionRecord[] Prefill,
    int[] GreedyTokens,
    PositionRecord[] GreedySteps)
{
    public static Inspection Run(TaHModel model, IReadOnlyList<int> prompt, IterationPolicy policy, int greedySteps)
    {
        var records = new SortedDictionary<int, PositionRecord>();
        var tokens = new List<int>();
        var request = new GenerationRequest
        {
            PromptTokens = prompt,
            MaxTokens = greedySteps + 1, // the last greedy token's own position must run too
            Policy = policy,
            Sampling = SamplingParams.Greedy,
            IgnoreEos = true,
            RecordPositions = true,
        };
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = KvBudget.PoolFor(request, model.MaxDepth) });
        engine.PositionCompleted += (_, record) => records[record.Position] = record;
        foreach (var e in engine.Generate(request))
        {
            tokens.Add(e.Token);
        }

        double? threshold = policy.Kind == PolicyKind.Decider ? policy.Threshold ?? model.Decider!.Threshold : null;
        return new Inspection(
            [.. prompt],
            policy,
            threshold,
            [.. records.Values.Where(r => r.Position < prompt.Count)],
            [.. tokens.Take(greedySteps)],
            [.. records.Values.Where(r => r.Position >= prompt.Count).Take(greedySteps)]);
    }

    public void WriteJson(Stream stream, string checkpoint)
    {
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = false });
        string name = Policy.Kind.ToString().ToLowerInvariant();
        json.WriteStartObject();
        json.WriteString("checkpoint", checkpoint);
        WriteInts(json, "prompt_ids", PromptIds);
        json.WriteStartObject("policies");
        json.WritePropertyName(name);
        WritePolicy(json);
        json.WriteEndObject();
        if (Threshold is { } t)
        {
            var probabilities = Prefill.Concat(GreedySteps).Select(r => r.ContinueProbability).OfType<double>().ToArray();
            json.WriteNumber("decider_margin", probabilities.Length == 0 ? double.NaN : probabilities.Min(p => Math.Abs(p - t)));
        }

        json.WriteEndObject();
    }

    private void WritePolicy(Utf8JsonWriter json)
    {
        json.WriteStartObject();
        WriteNullable(json, "threshold", Threshold);
        json.WriteStartArray("prefill");
        foreach (var record in Prefill)
        {
            json.WriteStartObject();
            json.WriteNumber("depth", record.Depth);
            WriteNullable(json, "continue_prob", record.ContinueProbability);
            WriteFloats(json, "final_logits", record.FinalLogits);
            json.WriteEndObject();
        }

        json.WriteEndArray();
        WriteInts(json, "greedy_tokens", GreedyTokens);
        WriteInts(json, "greedy_depths", [.. GreedySteps.Select(r => r.Depth)]);
        json.WriteStartArray("greedy_step_logits");
        foreach (var record in GreedySteps)
        {
            WriteFloats(json, null, record.FinalLogits);
        }

        json.WriteEndArray();
        json.WriteStartArray("greedy_continue_probs");
        foreach (var record in GreedySteps)
        {
            if (record.ContinueProbability is { } p)
            {
                json.WriteNumberValue(p);
            }
            else
            {
                json.WriteNullValue();
            }
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }

    private static void WriteNullable(Utf8JsonWriter json, string name, double? value)
    {
        if (value is { } v)
        {
            json.WriteNumber(name, v);
        }
        else
        {
            json.WriteNull(name);
        }
    }

    private static void WriteInts(Utf8JsonWriter json, string name, int[] values)
    {
        json.WriteStartArray(name);
        foreach (int v in values)
        {
            json.WriteNumberValue(v);
        }

        json.WriteEndArray();
    }

    private static void WriteFloats(Utf8JsonWriter json, string? name, float[] values)
    {
        if (name is null)
        {
            json.WriteStartArray();
        }
        else
        {
            json.WriteStartArray(name);
        }

        foreach (float v in values)
        {
            json.WriteNumberValue((double)v);
        }

        json.WriteEndArray();
    }
}
