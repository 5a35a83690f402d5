using TaH.Engine.Generation;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;

namespace TaH.Engine.Tests.Batching;

/// <summary>Drives an engine with requests arriving at given steps and collects each one's tokens and their depths.</summary>
internal static class BatchRunner
{
    public static GenerationRequest Request(int[] prompt, int maxTokens, IterationPolicy policy, long? seed = null) => new()
    {
        PromptTokens = prompt,
        MaxTokens = maxTokens,
        Policy = policy,
        Sampling = seed is null ? SamplingParams.Greedy : new SamplingParams { Temperature = 1f, Seed = seed },
        IgnoreEos = true,
    };

    /// <summary>Each request alone, in a fresh engine with a roomy pool and no prefix cache.</summary>
    public static (int Token, int Depth)[] Alone(TaHModel model, GenerationRequest request)
    {
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = 256, PrefixCaching = false });
        return [.. engine.Generate(request).Select(e => (e.Token, e.Depth))];
    }

    /// <summary>
    /// All requests in one engine; request i is added before step <paramref name="arrivals"/>[i].
    /// Returns every sequence's tokens and depths (forks included), keyed by sequence id.
    /// </summary>
    public static Dictionary<int, List<(int Token, int Depth)>> Together(InferenceEngine engine, IReadOnlyList<GenerationRequest> requests, IReadOnlyList<int> arrivals, Action<InferenceEngine, int>? afterStep = null)
    {
        var tokens = new Dictionary<int, List<(int Token, int Depth)>>();
        var ids = new int[requests.Count];
        int finished = 0, expected = requests.Sum(r => r.N);
        for (int step = 0; finished < expected; step++)
        {
            for (int i = 0; i < requests.Count; i++)
            {
                if (arrivals[i] == step)
                {
                    ids[i] = engine.Add(requests[i]).Id;
                }
            }

            foreach (var (sequence, e) in engine.Step())
            {
                (tokens.TryGetValue(sequence.Id, out var list) ? list : tokens[sequence.Id] = []).Add((e.Token, e.Depth));
                finished += e.Finish is null ? 0 : 1;
            }

            afterStep?.Invoke(engine, step);
            Assert.True(step < 100_000, "the engine stopped making progress");
        }

        return tokens;
    }
}
