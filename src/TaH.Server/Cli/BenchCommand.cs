using System.CommandLine;
using System.Globalization;
using TaH.Engine.Model;
using TaH.Engine.TaH;
using TaH.Server.Bench;

namespace TaH.Server.Cli;

/// <summary>
/// <c>tah bench</c>: decode throughput and latency per iteration policy and concurrency, measured
/// side by side in one run (interleaved rounds, medians), so the ratios hold on a noisy machine.
/// A random-weight model's decider probabilities mean nothing (and swing from one prompt to the
/// next), so <c>--target-share</c> runs the decider but picks the iterating tokens by a hash at
/// that rate: the cost of a realistic iteration rate without a trained model.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model(required: false);
        var url = new Option<Uri?>("--url") { Description = "benchmark a running server over HTTP (its base URL) instead of a model in this process" };
        var apiKey = new Option<string?>("--api-key") { Description = "with --url: the server's API key" };
        var policies = new Option<string>("--policies") { DefaultValueFactory = _ => "never,decider,always" };
        var concurrency = new Option<string>("--concurrency") { Description = "concurrent requests, comma separated", DefaultValueFactory = _ => "1,4,16,64" };
        var promptTokens = new Option<int>("--prompt-tokens") { DefaultValueFactory = _ => 32 };
        var tokens = new Option<int>("--tokens") { Description = "tokens decoded per request", DefaultValueFactory = _ => 128 };
        var rounds = new Option<int>("--rounds") { Description = "runs per cell, interleaved; medians are reported", DefaultValueFactory = _ => 1 };
        var kvBlocks = new Option<int>("--kv-blocks") { Description = "KV pool size in blocks of 16 (default: enough for every request)" };
        var threshold = CommonOptions.Threshold();
        var target = new Option<double?>("--target-share") { Description = "the decider runs, but this share of tokens (e.g. 0.06), picked by a hash, iterates: for random-weight models" };
        var json = new Option<string?>("--json") { Description = "also write the results as JSON to this file" };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "cpu (fp32) or cuda[:N] (bf16, CUDA kernels)", DefaultValueFactory = _ => "cpu" };
        var busy = new Option<int>("--busy-processes")
        {
            Description = "also run every cell with this many busy-loop processes beside it, and report loaded/idle decode tokens/s",
            DefaultValueFactory = _ => 0,
        };
        var structured = new Option<string?>("--structured") { Description = "instead: structured outputs over a JSON list of {name, schema} (compile time, mask time per token, decode tok/s with and without a constraint)" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "with --structured: the tokenizer directory (default: the model's)" };
        var weights = new WeightOptions();
        var overload = new OverloadOptions();
        var command = new Command("bench", "measure decode throughput and latency per iteration policy and concurrency (in process, or --url); with --arrival-rate, elastic depth off and on under overload")
        {
            model, url, apiKey, policies, concurrency, promptTokens, tokens, rounds, kvBlocks, threshold, target, json, seed, device, busy, structured, tokenizer,
        };
        weights.AddTo(command);
        overload.AddTo(command);
        command.SetAction(result => CliAction.Run(() =>
        {
            if (result.GetValue(overload.ArrivalRate) is { } arrivalRate)
            {
                return RunOverload(result, overload, arrivalRate, model, url, kvBlocks, threshold, target, promptTokens, tokens, json, seed, device, weights, rounds);
            }

            int prompt = result.GetValue(promptTokens), decode = result.GetValue(tokens);
            if (result.GetValue(structured) is { } corpus)
            {
                using var loaded = CommonOptions.Load(result.GetValue(model) ?? throw new ArgumentException("--structured needs --model DIR"), weights.Read(result, result.GetValue(device)!));
                StructuredBench.Run(loaded, result.GetValue(tokenizer) ?? loaded.Directory, corpus, prompt, decode, result.GetValue(rounds), result.GetValue(seed), result.GetValue(json), Console.Out);
                return 0;
            }

            var levels = ParseList(result.GetValue(concurrency)!, "--concurrency");
            string[] policyNames = result.GetValue(policies)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            double? chosenThreshold = result.GetValue(threshold);
            if (chosenThreshold is not null && result.GetValue(target) is not null)
            {
                throw new ArgumentException("give --threshold (a trained decider) or --target-share (a random one), not both");
            }

            Func<BenchScenario, int, BenchResult> run;
            object context;
            IDisposable? owned;
            if (result.GetValue(url) is { } baseUrl)
            {
                if (result.GetValue(target) is not null)
                {
                    throw new ArgumentException("--target-share needs the model in process (--model); against a server, pass --threshold");
                }

                if (weights.AnyGiven(result))
                {
                    throw new ArgumentException("--weights needs the model in process (--model); a server's weights are its own --weights");
                }

                var (served, vocab) = HttpBench.DescribeAsync(baseUrl, result.GetValue(apiKey)).GetAwaiter().GetResult();
                var http = new HttpBench(baseUrl, result.GetValue(apiKey), served, vocab);
                owned = http;
                run = http.Run;
                context = new { server = baseUrl.ToString(), model = served, decider_threshold = chosenThreshold, rounds = result.GetValue(rounds) };
                Console.Error.WriteLine($"server {baseUrl} serving {served}; prompt {prompt} + {decode} decoded tokens per request");
            }
            else
            {
                var tah = CommonOptions.Load(
                    result.GetValue(model) ?? throw new ArgumentException("give --model DIR, or --url of a running server"),
                    weights.Read(result, result.GetValue(device)!));
                owned = tah;
                int blocks = result.GetValue(kvBlocks) is > 0 and var b ? b : tah.MaxDepth * levels.Max() * (((prompt + decode) / 16) + 2);
                var bench = new InProcessBench(tah, blocks);
                foreach (string name in policyNames)
                {
                    if (tah.Supports(IterationPolicy.Parse(name)) is { } problem)
                    {
                        throw new ArgumentException(problem);
                    }
                }

                run = bench.Run;
                context = new
                {
                    model = tah.Directory,
                    layers = tah.Config.NumHiddenLayers,
                    hidden = tah.Config.HiddenSize,
                    weights = tah.Base.Weights.Name(),
                    weight_bytes = tah.WeightBytes,
                    cpu_isa = TaH.Kernels.Cpu.CpuIsas.Best.ToString().ToLowerInvariant(),
                    cpu_pool_threads = TaH.Kernels.Cpu.CpuWorkerPool.Shared.Threads,
                    kv_blocks = blocks,
                    torch_threads = TorchSharp.torch.get_num_threads(),
                    omp_wait_policy = Environment.GetEnvironmentVariable(TaH.Engine.Serving.ThreadPolicy.OmpWaitPolicy),
                    gomp_spincount = Environment.GetEnvironmentVariable("GOMP_SPINCOUNT"),
                    decider_threshold = chosenThreshold,
                    decider_rate = result.GetValue(target),
                    rounds = result.GetValue(rounds),
                };
                Console.Error.WriteLine($"model {tah.Directory}: {tah.Config.NumHiddenLayers} layers, hidden {tah.Config.HiddenSize}, vocab {tah.Config.VocabSize}, {tah.Base.Weights.Name()} weights; " +
                    $"prompt {prompt} + {decode} decoded tokens per request; {blocks} KV blocks; torch threads {TorchSharp.torch.get_num_threads()}");
            }

            using (owned)
            {
                double? rate = result.GetValue(target);
                var chosen = policyNames
                    .Select(p => IterationPolicy.Parse(p, IsDecider(p) ? chosenThreshold : null))
                    .Select(p => p.Kind == PolicyKind.Decider && rate is { } r ? IterationPolicy.DeciderAtRate(r) : p)
                    .ToArray();
                run(new BenchScenario(chosen[0], 1, prompt, 8), -1); // warm-up: allocator, caches, connections
                var scenarios = levels.SelectMany(c => chosen.Select(p => new BenchScenario(p, c, prompt, decode))).ToList();
                int busyProcesses = result.GetValue(busy);
                int total = scenarios.Count * result.GetValue(rounds) * (busyProcesses > 0 ? 2 : 1), done = 0;
                var runs = scenarios.ToDictionary(s => s, _ => new List<BenchResult>());
                var loadedRuns = scenarios.ToDictionary(s => s, _ => new List<BenchResult>());
                for (int round = 0; round < result.GetValue(rounds); round++)
                {
                    foreach (var scenario in scenarios)
                    {
                        int runSeed = result.GetValue(seed) + (round * 1000);
                        Progress(done++, total, scenario);
                        runs[scenario].Add(run(scenario, runSeed));
                        if (busyProcesses > 0)
                        {
                            // The same cell, side by side, with the busy loops beside it.
                            Progress(done++, total, scenario);
                            using var load = BusyLoad.Start(busyProcesses);
                            loadedRuns[scenario].Add(run(scenario, runSeed));
                        }
                    }
                }

                Progress(done, total, null);
                var results = scenarios.Select(s => BenchResult.Median(runs[s])).ToList();
                var loaded = busyProcesses > 0 ? scenarios.Select(s => BenchResult.Median(loadedRuns[s])).ToList() : null;
                BenchReport.WriteTable(Console.Out, results);
                if (loaded is not null)
                {
                    Console.Out.WriteLine($"with {busyProcesses} busy-loop process(es) beside it:");
                    BenchReport.WriteTable(Console.Out, loaded);
                    foreach (string line in BenchReport.LoadRatios(results, loaded))
                    {
                        Console.Out.WriteLine(line);
                    }
                }

                if (result.GetValue(json) is { } path)
                {
                    BenchReport.WriteJson(path, results, context, loaded);
                }
            }

            return 0;
        }));
        return command;
    }

    /// <summary>Elastic depth off, then on, under the same open-loop overload, in this process.</summary>
    private static int RunOverload(ParseResult result, OverloadOptions overload, double arrivalRate, Option<string> model, Option<Uri?> url, Option<int> kvBlocks,
        Option<double?> threshold, Option<double?> target, Option<int> promptTokens, Option<int> tokens, Option<string?> json, Option<int> seed, Option<string> device, WeightOptions weights, Option<int> rounds)
    {
        if (result.GetValue(url) is not null)
        {
            throw new ArgumentException("--arrival-rate runs the server's engine loop in this process: give --model, not --url");
        }

        if (!(arrivalRate > 0) || !(result.GetValue(overload.Duration) > 0))
        {
            throw new ArgumentException("--arrival-rate and --duration must be positive");
        }

        using var tah = CommonOptions.Load(
            result.GetValue(model) ?? throw new ArgumentException("--arrival-rate needs --model DIR"),
            weights.Read(result, result.GetValue(device)!));
        if (tah.Supports(IterationPolicy.Decider) is { } problem)
        {
            throw new ArgumentException(problem);
        }

        // The requests leave the threshold to the server (the ones elastic depth governs).
        var policy = (result.GetValue(target) is { } rate ? IterationPolicy.DeciderAtRate(rate) : IterationPolicy.Parse("decider", result.GetValue(threshold))) with { Elastic = true };
        int prompt = result.GetValue(promptTokens), decode = result.GetValue(tokens), maxRunning = result.GetValue(overload.MaxRunning);
        int blocks = result.GetValue(kvBlocks) is > 0 and var b ? b : tah.MaxDepth * maxRunning * (((prompt + decode) / 16) + 2);
        var scenario = new OverloadScenario(policy, arrivalRate, result.GetValue(overload.Duration), prompt, decode, maxRunning, blocks,
            result.GetValue(overload.MinShare), TimeSpan.FromSeconds(result.GetValue(overload.Interval)), result.GetValue(seed));
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"model {tah.Directory}: {tah.Config.NumHiddenLayers} layers, hidden {tah.Config.HiddenSize}; {policy}; {arrivalRate} requests/s for {scenario.DurationSeconds} s, prompt {prompt} + {decode} tokens; max running {maxRunning}, {blocks} KV blocks; torch threads {TorchSharp.torch.get_num_threads()}"));

        new InProcessBench(tah, blocks).Run(new BenchScenario(policy, 1, prompt, 8), -1); // warm-up: allocator, JIT
        // Rounds in the order off, on, on, off, ...: neither mode always runs first; medians are reported.
        var bench = new OverloadBench(tah);
        var runs = new List<OverloadResult>();
        for (int round = 0; round < Math.Max(1, result.GetValue(rounds)); round++)
        {
            foreach (bool elastic in round % 2 == 0 ? new[] { false, true } : [true, false])
            {
                runs.Add(bench.Run(scenario, elastic, Console.Error));
            }
        }

        var results = new[] { false, true }.Select(e => OverloadResult.Median([.. runs.Where(r => r.Elastic == e)])).ToArray();
        OverloadBench.WriteTable(Console.Out, results);
        if (result.GetValue(json) is { } path)
        {
            OverloadBench.WriteJson(path, scenario, results, new { model = tah.Directory, layers = tah.Config.NumHiddenLayers, hidden = tah.Config.HiddenSize, torch_threads = TorchSharp.torch.get_num_threads() });
        }

        return 0;
    }

    /// <summary>The flags of the overload benchmark.</summary>
    private sealed class OverloadOptions
    {
        public Option<double?> ArrivalRate { get; } = new("--arrival-rate") { Description = "overload mode: requests per second offered (Poisson), more than the engine serves; compares elastic depth off and on" };

        public Option<double> Duration { get; } = new("--duration") { Description = "seconds the arrivals last (overload mode)", DefaultValueFactory = _ => 60 };

        public Option<int> MaxRunning { get; } = new("--max-running") { Description = "sequences decoded together (overload mode)", DefaultValueFactory = _ => 64 };

        public Option<double> MinShare { get; } = new("--elastic-min-share") { Description = "the floor elastic depth lowers the depth-2 share to", DefaultValueFactory = _ => 0.01 };

        public Option<double> Interval { get; } = new("--elastic-interval") { Description = "seconds load (or calm) must last before elastic depth steps down (or returns)", DefaultValueFactory = _ => 0.5 };

        public void AddTo(Command command)
        {
            foreach (var option in new Option[] { ArrivalRate, Duration, MaxRunning, MinShare, Interval })
            {
                command.Options.Add(option);
            }
        }
    }

    private static void Progress(int done, int total, BenchScenario? next)
    {
        if (Console.IsErrorRedirected)
        {
            return;
        }

        const int width = 30;
        int filled = total == 0 ? width : done * width / total;
        string label = next is null ? "done" : $"{next.Policy} x{next.Concurrency}";
        Console.Error.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {done}/{total} {label,-32}");
        if (next is null)
        {
            Console.Error.WriteLine();
        }
    }

    private static bool IsDecider(string policy) => policy.StartsWith("decider", StringComparison.OrdinalIgnoreCase);

    private static int[] ParseList(string text, string option) =>
        [.. text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(part => int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0
                ? v
                : throw new ArgumentException($"{option}: '{part}' is not a positive integer"))];
}
