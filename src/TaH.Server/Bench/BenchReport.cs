using System.Globalization;
using System.Text.Json;
using TaH.Engine.TaH;

namespace TaH.Server.Bench;

/// <summary>The results of a benchmark run as a table, ratios and JSON.</summary>
internal static class BenchReport
{
    public static void WriteTable(TextWriter output, IReadOnlyList<BenchResult> results)
    {
        output.WriteLine($"{"policy",-24} {"conc",5} {"decode tok/s",13} {"ms/token",9} {"TTFT p50/p90/p99 ms",22} {"ITL p50/p90/p99 ms",22} {"depth-2",8} {"KV MiB d1/d2",14} {"kernels",8}");
        foreach (var r in results)
        {
            output.WriteLine(
                $"{r.Scenario.Policy,-24} {r.Scenario.Concurrency,5} {r.DecodeTokensPerSecond,13:F2} {r.MsPerToken,9:F1} " +
                $"{$"{r.TimeToFirstTokenP50:F0}/{r.TimeToFirstTokenP90:F0}/{r.TimeToFirstTokenP99:F0}",22} " +
                $"{$"{r.InterTokenP50:F0}/{r.InterTokenP90:F0}/{r.InterTokenP99:F0}",22} {r.Depth2Share,8:P1} " +
                $"{$"{Mib(r.KvBytesDepth1):F1}/{Mib(r.KvBytesDepth2):F1}",14} {(r.KernelShare is { } k ? k.ToString("P0", CultureInfo.InvariantCulture) : "-"),8}");
        }

        foreach (string line in Ratios(results))
        {
            output.WriteLine(line);
        }
    }

    /// <summary>
    /// The ratio within each round too, where both cells ran several: the rounds interleave the
    /// cells, so a round's pair shares the machine's state of the moment, and the median of the
    /// pairs moves less with the machine than the ratio of the two medians.
    /// </summary>
    private static string RoundByRound(BenchResult cell, BenchResult baseline)
    {
        if (cell.RoundMsPerToken.Count < 2 || cell.RoundMsPerToken.Count != baseline.RoundMsPerToken.Count)
        {
            return "";
        }

        double[] ratios = [.. cell.RoundMsPerToken.Zip(baseline.RoundMsPerToken, (a, b) => a / b)];
        return Invariant($"; round by round {string.Join(" ", ratios.Select(r => r.ToString("F3", CultureInfo.InvariantCulture)))}, median {BenchResult.Percentile(ratios, 0.5):F3}x");
    }

    /// <summary>The figures the batching work is judged by, where the runs allow them.</summary>
    public static IEnumerable<string> Ratios(IReadOnlyList<BenchResult> results)
    {
        BenchResult? Find(PolicyKind kind, int concurrency) =>
            results.FirstOrDefault(r => r.Scenario.Policy.Kind == kind && r.Scenario.Concurrency == concurrency);

        var concurrencies = results.Select(r => r.Scenario.Concurrency).Distinct().Order().ToArray();
        foreach (var kind in results.Select(r => r.Scenario.Policy.Kind).Distinct())
        {
            if (Find(kind, 1) is { } one)
            {
                foreach (int c in concurrencies.Where(c => c > 1))
                {
                    if (Find(kind, c) is { } many)
                    {
                        yield return Invariant($"{kind.ToString().ToLowerInvariant()}: decode tokens/s at concurrency {c} / concurrency 1 = {many.DecodeTokensPerSecond / one.DecodeTokensPerSecond:F2}x");
                    }
                }
            }
        }

        foreach (int c in concurrencies)
        {
            if (Find(PolicyKind.Never, c) is not { } never)
            {
                continue;
            }

            if (Find(PolicyKind.Decider, c) is { } decider)
            {
                yield return Invariant($"concurrency {c}: per-token cost decider/never = {decider.MsPerToken / never.MsPerToken:F3}x (decider depth-2 share {decider.Depth2Share:P1}){RoundByRound(decider, never)}");
            }

            if (Find(PolicyKind.Always, c) is { } always)
            {
                yield return Invariant($"concurrency {c}: per-token cost always/never = {always.MsPerToken / never.MsPerToken:F3}x{RoundByRound(always, never)}");
                if (Find(PolicyKind.Decider, c) is { } d)
                {
                    yield return Invariant($"concurrency {c}: KV bytes decider/always = {(double)(d.KvBytesDepth1 + d.KvBytesDepth2) / (always.KvBytesDepth1 + always.KvBytesDepth2):F3}");
                }
            }
        }
    }

    /// <summary>Each cell's decode throughput with busy processes beside it, over the same cell idle.</summary>
    public static IEnumerable<string> LoadRatios(IReadOnlyList<BenchResult> idle, IReadOnlyList<BenchResult> loaded) =>
        idle.Zip(loaded, (i, l) => Invariant($"{i.Scenario.Policy} x{i.Scenario.Concurrency}: decode tokens/s loaded/idle = {l.DecodeTokensPerSecond:F1}/{i.DecodeTokensPerSecond:F1} = {l.DecodeTokensPerSecond / i.DecodeTokensPerSecond:P0}"));

    public static void WriteJson(string path, IReadOnlyList<BenchResult> results, object context, IReadOnlyList<BenchResult>? loaded = null)
    {
        var document = new
        {
            context,
            results = Rows(results),
            ratios = Ratios(results),
            loaded = loaded is null ? null : Rows(loaded),
            loaded_over_idle = loaded is null ? null : LoadRatios(results, loaded),
        };
        File.WriteAllText(path, JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true }));
    }

    private static IEnumerable<object> Rows(IReadOnlyList<BenchResult> results) =>
        results.Select(r => new
        {
            policy = r.Scenario.Policy.ToString(),
            concurrency = r.Scenario.Concurrency,
            prompt_tokens = r.Scenario.PromptTokens,
            decode_tokens = r.Scenario.DecodeTokens,
            decode_tokens_per_second = r.DecodeTokensPerSecond,
            ms_per_token = r.MsPerToken,
            ttft_ms = new { p50 = r.TimeToFirstTokenP50, p90 = r.TimeToFirstTokenP90, p99 = r.TimeToFirstTokenP99 },
            inter_token_ms = new { p50 = r.InterTokenP50, p90 = r.InterTokenP90, p99 = r.InterTokenP99 },
            depth2_share = r.Depth2Share,
            kv_bytes_depth1 = r.KvBytesDepth1,
            kv_bytes_depth2 = r.KvBytesDepth2,
            weight_kernel_share = r.KernelShare,
        });

    private static double Mib(long bytes) => bytes / (1024.0 * 1024.0);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
