using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using TaH.Engine.Generation;
using TaH.Engine.Model;
using TaH.Engine.Sampling;
using TaH.Engine.TaH;

namespace TaH.Server.Cli;

/// <summary>
/// <c>tah bench</c>: in-process decode throughput per policy, side by side in one run, so the
/// ratios hold even on a noisy machine. The decider's threshold can be calibrated to a target
/// share of iterating tokens (random-weight models have no meaningful threshold of their own).
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var policies = new Option<string>("--policies") { DefaultValueFactory = _ => "never,decider,always" };
        var promptTokens = new Option<int>("--prompt-tokens") { DefaultValueFactory = _ => 32 };
        var tokens = new Option<int>("--tokens") { Description = "tokens decoded per run", DefaultValueFactory = _ => 64 };
        var rounds = new Option<int>("--rounds") { Description = "runs per policy, interleaved; the median is reported", DefaultValueFactory = _ => 3 };
        var threshold = CommonOptions.Threshold();
        var target = new Option<double?>("--target-share") { Description = "calibrate the decider threshold so about this share of tokens iterates (e.g. 0.06)" };
        var json = new Option<string?>("--json") { Description = "also write the results as JSON to this file" };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "cpu (fp32) or cuda[:N] (bf16, CUDA kernels)", DefaultValueFactory = _ => "cpu" };
        var command = new Command("bench", "measure decode tokens/s per iteration policy (batch 1, in process)")
        {
            model, policies, promptTokens, tokens, rounds, threshold, target, json, seed, device,
        };
        command.SetAction(result => CliAction.Run(() =>
        {
            using var tah = ModelLoader.Load(result.GetValue(model)!, ModelOptions.Parse(result.GetValue(device)!));
            var random = new Random(result.GetValue(seed));
            var prompt = Enumerable.Range(0, result.GetValue(promptTokens)).Select(_ => random.Next(tah.Config.VocabSize)).ToArray();
            int decode = result.GetValue(tokens);

            double? chosenThreshold = result.GetValue(threshold);
            if (result.GetValue(target) is { } share)
            {
                chosenThreshold = Calibrate(tah, prompt, decode, share);
                Console.Error.WriteLine($"calibrated decider threshold {chosenThreshold:F4} for a target share of {share:P1}");
            }

            var chosen = result.GetValue(policies)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(p => IterationPolicy.Parse(p, p.StartsWith("decider", StringComparison.OrdinalIgnoreCase) ? chosenThreshold : null))
                .ToArray();
            foreach (var p in chosen)
            {
                if (tah.Supports(p) is { } problem)
                {
                    throw new ArgumentException(problem);
                }
            }

            Console.Error.WriteLine($"model {tah.Directory}: {tah.Config.NumHiddenLayers} layers, hidden {tah.Config.HiddenSize}, vocab {tah.Config.VocabSize}; " +
                $"prompt {prompt.Length} tokens, {decode} decoded tokens, {result.GetValue(rounds)} rounds; torch threads {TorchSharp.torch.get_num_threads()}");

            Measure(tah, prompt, 8, chosen[0]); // warm-up: allocator, caches
            var runs = chosen.ToDictionary(p => p, _ => new List<Run>());
            for (int round = 0; round < result.GetValue(rounds); round++)
            {
                foreach (var p in chosen)
                {
                    runs[p].Add(Measure(tah, prompt, decode, p));
                }
            }

            var rows = chosen.Select(p => Summary.Of(p, runs[p])).ToArray();
            var baseline = rows.FirstOrDefault(r => r.Policy.Kind == PolicyKind.Never);
            Console.WriteLine($"{"policy",-26} {"decode tok/s",12} {"ms/token",9} {"vs never",9} {"depth-2 share",14} {"prefill ms",11} {"KV KiB d1/d2",16}");
            foreach (var r in rows)
            {
                string ratio = baseline is null ? "-" : (r.MsPerToken / baseline.MsPerToken).ToString("F3", CultureInfo.InvariantCulture) + "x";
                Console.WriteLine($"{r.Policy,-26} {r.TokensPerSecond,12:F2} {r.MsPerToken,9:F1} {ratio,9} {r.DeepShare,14:P1} {r.PrefillMs,11:F0} {r.KvBytesDepth1 / 1024,8:F0}/{r.KvBytesDepth2 / 1024,-7:F0}");
            }

            if (result.GetValue(json) is { } path)
            {
                File.WriteAllText(path, JsonSerializer.Serialize(rows.Select(r => new
                {
                    policy = r.Policy.ToString(),
                    decode_tokens_per_second = r.TokensPerSecond,
                    ms_per_token = r.MsPerToken,
                    per_token_cost_vs_never = baseline is null ? (double?)null : r.MsPerToken / baseline.MsPerToken,
                    depth2_share = r.DeepShare,
                    prefill_ms = r.PrefillMs,
                    kv_bytes_depth1 = r.KvBytesDepth1,
                    kv_bytes_depth2 = r.KvBytesDepth2,
                }), new JsonSerializerOptions { WriteIndented = true }));
            }

            return 0;
        }));
        return command;
    }

    // Seeded sampling rather than greedy: a random-weight model decoded greedily repeats one token,
    // which would make every decision the same.
    private static readonly SamplingParams BenchSampling = new() { Temperature = 1f, Seed = 1234 };

    private static Run Measure(TaHModel model, int[] prompt, int tokens, IterationPolicy policy)
    {
        var request = new GenerationRequest
        {
            PromptTokens = prompt,
            MaxTokens = tokens,
            Policy = policy,
            Sampling = BenchSampling,
            IgnoreEos = true,
        };
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = EngineOptions.BlocksFor(request, model.MaxDepth) });
        var sequence = engine.Add(request);
        var clock = Stopwatch.StartNew();
        TimeSpan first = TimeSpan.Zero;
        int produced = 0, deep = 0;
        long kv1 = 0, kv2 = 0;
        while (sequence.Finished is null)
        {
            foreach (var (_, e) in engine.Step())
            {
                if (produced++ == 0)
                {
                    first = clock.Elapsed;
                }

                deep += e.Depth > 1 ? 1 : 0;
            }

            kv1 = Math.Max(kv1, sequence.KvBytes(1));
            kv2 = Math.Max(kv2, sequence.KvBytes(2));
        }

        var decodeTime = clock.Elapsed - first;
        return new Run(first.TotalMilliseconds, decodeTime.TotalMilliseconds / Math.Max(1, produced - 1), (double)deep / produced, kv1, kv2);
    }

    /// <summary>
    /// A threshold that about <paramref name="share"/> of decoded tokens' first-pass continue
    /// probabilities exceed, measured on a decode with iteration switched off.
    /// </summary>
    private static double Calibrate(TaHModel model, int[] prompt, int tokens, double share)
    {
        var request = new GenerationRequest
        {
            PromptTokens = prompt,
            MaxTokens = Math.Max(64, 2 * tokens),
            Policy = new IterationPolicy(PolicyKind.Decider, 1.0),
            Sampling = BenchSampling,
            IgnoreEos = true,
        };
        using var engine = new InferenceEngine(model, new EngineOptions { KvBlocks = EngineOptions.BlocksFor(request, model.MaxDepth) });
        var probabilities = engine.Generate(request).Select(e => e.ContinueProbability).OfType<double>().OrderDescending().ToArray();
        int keep = Math.Clamp((int)Math.Round(share * probabilities.Length), 0, probabilities.Length - 1);
        return probabilities[keep];
    }

    private sealed record Run(double PrefillMs, double MsPerToken, double DeepShare, long KvBytesDepth1, long KvBytesDepth2);

    private sealed record Summary(IterationPolicy Policy, double MsPerToken, double PrefillMs, double DeepShare, long KvBytesDepth1, long KvBytesDepth2)
    {
        public double TokensPerSecond => 1000 / MsPerToken;

        public static Summary Of(IterationPolicy policy, List<Run> runs)
        {
            static double Median(IEnumerable<double> values)
            {
                var sorted = values.Order().ToArray();
                return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
            }

            return new Summary(policy, Median(runs.Select(r => r.MsPerToken)), Median(runs.Select(r => r.PrefillMs)), runs.Average(r => r.DeepShare), runs[0].KvBytesDepth1, runs[0].KvBytesDepth2);
        }
    }
}
