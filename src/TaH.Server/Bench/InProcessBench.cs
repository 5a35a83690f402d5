using System.Diagnostics;
using TaH.Engine.Generation;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;
using TaH.Kernels.Cpu;

namespace TaH.Server.Bench;

/// <summary>Runs a scenario in this process: all requests start together in one engine.</summary>
internal sealed class InProcessBench(TaHModel model, int kvBlocks)
{
    // Seeded sampling rather than greedy: a random-weight model decoded greedily repeats one token,
    // which would make every decision the same.
    public static SamplingParams Sampling { get; } = new() { Temperature = 1f, Seed = 1234 };

    public BenchResult Run(BenchScenario scenario, int seed)
    {
        var random = new Random(seed);
        using var engine = new InferenceEngine(model, new EngineOptions
        {
            KvBlocks = kvBlocks,
            MaxRunning = Math.Max(64, scenario.Concurrency),
            PrefixCaching = false, // distinct random prompts share nothing anyway
        });
        var timings = new RunTimings(scenario);
        var clock = Stopwatch.StartNew();
        var requestOf = new Dictionary<Sequence, int>();
        for (int i = 0; i < scenario.Concurrency; i++)
        {
            var sequence = engine.Add(new GenerationRequest
            {
                PromptTokens = [.. Enumerable.Range(0, scenario.PromptTokens).Select(_ => random.Next(model.Config.VocabSize))],
                MaxTokens = scenario.DecodeTokens,
                Policy = scenario.Policy,
                Sampling = Sampling with { Seed = seed + i },
                IgnoreEos = true,
            });
            requestOf[sequence] = timings.AddRequest(0);
        }

        while (engine.HasWork)
        {
            var events = engine.Step();
            double now = clock.Elapsed.TotalMilliseconds;
            timings.Step(now, KernelClock.Elapsed.TotalMilliseconds);
            foreach (var (sequence, e) in events)
            {
                timings.Token(requestOf[sequence], now, e.Depth);
            }

            timings.KvBytesDepth1 = Math.Max(timings.KvBytesDepth1, engine.Cache.UsedBlocks(1) * engine.Cache.BytesPerBlock);
            timings.KvBytesDepth2 = Math.Max(timings.KvBytesDepth2, engine.Cache.UsedBlocks(2) * engine.Cache.BytesPerBlock);
        }

        return timings.Result();
    }
}
