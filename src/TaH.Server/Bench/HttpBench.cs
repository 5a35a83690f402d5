using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TaH.Server.Bench;

/// <summary>
/// Runs a scenario against a running server: concurrent streamed <c>/v1/completions</c> requests
/// with random token-id prompts, timed from the server-sent events as a client sees them.
/// </summary>
internal sealed class HttpBench(Uri baseUrl, string? apiKey, string model, int vocabSize) : IDisposable
{
    private readonly HttpClient _http = new() { BaseAddress = baseUrl, Timeout = Timeout.InfiniteTimeSpan };

    /// <summary>The served model's name and vocabulary size (0 when the server does not say: prompts are then text).</summary>
    public static async Task<(string Model, int VocabSize)> DescribeAsync(Uri baseUrl, string? apiKey)
    {
        using var http = new HttpClient { BaseAddress = baseUrl };
        using var request = new HttpRequestMessage(HttpMethod.Get, "v1/models");
        if (apiKey is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        }

        using var response = await http.SendAsync(request).ConfigureAwait(false);
        response.EnsureSuccessStatusCode();
        var models = JsonNode.Parse(await response.Content.ReadAsStringAsync().ConfigureAwait(false))!["data"]!.AsArray();
        var first = models[0]!;
        return (first["id"]!.GetValue<string>(), first["tah"]?["vocab_size"]?.GetValue<int>() ?? 0);
    }

    public BenchResult Run(BenchScenario scenario, int seed) => RunAsync(scenario, seed).GetAwaiter().GetResult();

    private async Task<BenchResult> RunAsync(BenchScenario scenario, int seed)
    {
        var random = new Random(seed);
        var timings = new RunTimings(scenario);
        var clock = Stopwatch.StartNew();
        var gate = new object();
        var tasks = Enumerable.Range(0, scenario.Concurrency).Select(i =>
        {
            JsonNode prompt = vocabSize > 0
                ? new JsonArray([.. Enumerable.Range(0, scenario.PromptTokens).Select(_ => (JsonNode)random.Next(vocabSize))])
                : string.Join(' ', Enumerable.Range(0, scenario.PromptTokens).Select(_ => Words[random.Next(Words.Length)]));
            int index;
            lock (gate)
            {
                index = timings.AddRequest(clock.Elapsed.TotalMilliseconds);
            }

            return Task.Run(() => StreamAsync(scenario, prompt, seed + i, depth =>
            {
                lock (gate)
                {
                    timings.Token(index, clock.Elapsed.TotalMilliseconds, depth);
                }
            }));
        }).ToArray();
        await Task.WhenAll(tasks).ConfigureAwait(false);
        return timings.Result();
    }

    // Common words: about one token each in a byte-level BPE vocabulary.
    private static readonly string[] Words = ["the", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "are", "with", "as", "at", "be", "this", "have", "from", "or"];

    private async Task StreamAsync(BenchScenario scenario, JsonNode prompt, int seed, Action<int> token)
    {
        var tah = new JsonObject { ["policy"] = scenario.Policy.Kind.ToString().ToLowerInvariant() };
        if (scenario.Policy.Threshold is { } threshold)
        {
            tah["threshold"] = threshold;
        }

        var body = new JsonObject
        {
            ["model"] = model,
            ["prompt"] = prompt,
            ["max_tokens"] = scenario.DecodeTokens,
            ["temperature"] = 1.0,
            ["seed"] = seed,
            ["stream"] = true,
            ["ignore_eos"] = true,
            ["tah"] = tah,
        };
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions")
        {
            Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"),
        };
        if (apiKey is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        }

        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new IOException($"{baseUrl} answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync().ConfigureAwait(false)}");
        }

        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync().ConfigureAwait(false));
        while (await reader.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal) || line == "data: [DONE]")
            {
                continue;
            }

            // One event may carry several tokens (text held back for a stop string): their depths say how many.
            var depths = JsonNode.Parse(line["data: ".Length..])?["choices"]?[0]?["tah"]?["depths"]?.AsArray();
            foreach (var depth in depths ?? [])
            {
                token(depth!.GetValue<int>());
            }
        }
    }

    public void Dispose() => _http.Dispose();
}
