using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using TaH.Engine.TaH;
using TaH.Server.Api;
using TaH.Server.Api.Reading;

namespace TaH.Server.Tests;

/// <summary>
/// <c>"tah": {"target_share", "max_share"}</c> over HTTP: the depths are the engine's, each
/// choice stays within one token of its target, and streamed chunks and usage report the share
/// reached beside the target. Which requests elastic depth may govern.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class DepthBudgetApiTests(SharedServer shared)
{
    private readonly TestServer _server = shared.Server;

    [Fact]
    public async Task ABudgetedChoiceGetsTheEnginesDepthsAndReportsItsShareAndTarget()
    {
        const int Tokens = 40;
        var (status, json) = await _server.PostAsync("/v1/chat/completions", new
        {
            messages = new[] { new { role = "user", content = "Think hard about this." } },
            max_tokens = Tokens,
            temperature = 0,
            ignore_eos = true,
            tah = new { target_share = 0.2, max_share = 0.25 },
        });
        Assert.Equal(200, status);

        var policy = IterationPolicy.Decider.WithBudget(DepthBudgetSettings.Create(0.2, 0.25));
        var expected = Reference.Greedy(Reference.ChatPrompt("Think hard about this."), Tokens, policy);
        var choice = json!["choices"]![0]!;
        var depths = choice["tah"]!["depths"]!.AsArray().Select(d => (int)d!).ToArray();
        Assert.Equal(expected.Depths, depths);
        int deep = depths.Count(d => d == 2);
        Assert.True(Math.Abs(deep - (0.2 * Tokens)) < 1, $"{deep} of {Tokens} tokens at depth 2");
        Assert.True(deep <= 0.25 * Tokens);

        Assert.Equal((double)deep / Tokens, (double)choice["tah"]!["depth2_share"]!, 6);
        Assert.Equal(0.2, (double)choice["tah"]!["target_share"]!);
        var usage = json["usage"]!["tah"]!;
        Assert.Equal(deep, (int)usage["depth2_tokens"]!);
        Assert.Equal(0.2, (double)usage["target_share"]!);
        Assert.Equal(0.25, (double)usage["max_share"]!);
        Assert.Equal("decider(target_share=0.2,max_share=0.25)", (string)usage["policy"]!);
    }

    [Fact]
    public async Task StreamedChunksCarryTheRunningShareAndEachSampleKeepsItsOwnBudget()
    {
        const int Tokens = 30;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new
            {
                prompt = "Once upon a time",
                max_tokens = Tokens,
                temperature = 1.0,
                seed = 11,
                n = 3,
                ignore_eos = true,
                stream = true,
                stream_options = new { include_usage = true },
                tah = new { target_share = 0.1 },
            }),
        };
        using var response = await _server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => e["data: ".Length..]).Where(d => d != "[DONE]").Select(d => JsonNode.Parse(d)!).ToList();

        var depths = new Dictionary<int, List<int>>();
        foreach (var chunk in events.Where(e => e["choices"]!.AsArray().Count > 0))
        {
            var choice = chunk["choices"]![0]!;
            if (choice["tah"] is not { } tah)
            {
                continue;
            }

            int index = (int)choice["index"]!;
            var list = depths.TryGetValue(index, out var l) ? l : depths[index] = [];
            list.AddRange(tah["depths"]!.AsArray().Select(d => (int)d!));

            // The share this choice has reached by the end of the chunk, and its target.
            Assert.Equal((double)list.Count(d => d == 2) / list.Count, (double)tah["depth2_share"]!, 6);
            Assert.Equal(0.1, (double)tah["target_share"]!);
        }

        Assert.Equal(3, depths.Count);
        foreach (var list in depths.Values)
        {
            Assert.Equal(Tokens, list.Count);
            Assert.True(Math.Abs(list.Count(d => d == 2) - (0.1 * Tokens)) < 1, string.Join(",", list));
        }

        var usage = events[^1]["usage"]!["tah"]!;
        Assert.Equal(depths.Values.Sum(l => l.Count(d => d == 2)), (int)usage["depth2_tokens"]!);
        Assert.Equal(0.1, (double)usage["target_share"]!);
        await _server.AssertEngineIdleAsync();
    }

    [Fact]
    public async Task TargetShareZeroAnswersAsNever()
    {
        async Task<JsonNode> Ask(object tah) => (await _server.PostAsync("/v1/completions", new { prompt = "The weather today", max_tokens = 12, temperature = 0, ignore_eos = true, logprobs = 1, tah })).Body!;
        var never = await Ask(new { policy = "never" });
        var zero = await Ask(new { target_share = 0 });
        Assert.Equal(never["choices"]![0]!["text"]!.ToJsonString(), zero["choices"]![0]!["text"]!.ToJsonString());
        Assert.Equal(never["choices"]![0]!["logprobs"]!.ToJsonString(), zero["choices"]![0]!["logprobs"]!.ToJsonString());
        Assert.Equal(0, (int)zero["usage"]!["tah"]!["depth2_tokens"]!);
    }

    [Fact]
    public void ElasticDepthGovernsOnlyRequestsThatLeaveTheThresholdToTheServer()
    {
        IterationPolicy Read(TaHRequestOptions? tah, IterationPolicy? serverDefault = null) => TaHOptionsReader.ReadPolicy(tah, serverDefault ?? IterationPolicy.Decider);

        Assert.True(Read(null).Elastic);
        Assert.True(Read(new TaHRequestOptions { Policy = "decider" }).Elastic);
        Assert.True(Read(null, IterationPolicy.Parse("decider", 0.3)).Elastic); // the server's --threshold is the default it raises
        Assert.True(Read(new TaHRequestOptions { MaxShare = 0.1 }).Elastic); // a cap alone sets no threshold
        Assert.False(Read(new TaHRequestOptions { Threshold = 0.5 }).Elastic);
        Assert.False(Read(new TaHRequestOptions { TargetShare = 0.05 }).Elastic);
        Assert.False(Read(new TaHRequestOptions { Policy = "never" }).Elastic);
        Assert.False(Read(new TaHRequestOptions { Policy = "always" }).Elastic);

        // A target replaces the server's default threshold; a cap alone keeps it.
        Assert.Null(Read(new TaHRequestOptions { TargetShare = 0.05 }, IterationPolicy.Parse("decider", 0.3)).Threshold);
        Assert.Equal(0.3, Read(new TaHRequestOptions { MaxShare = 0.1 }, IterationPolicy.Parse("decider", 0.3)).Threshold);
        Assert.Equal(PolicyKind.Decider, Read(new TaHRequestOptions { TargetShare = 0.05 }, IterationPolicy.Never).Kind);
    }
}

/// <summary>A server started with --elastic-depth: under load it yields, logs each change, shows it in /metrics, and comes back.</summary>
[Collection(ServerCollection.Name)]
public sealed class ElasticDepthServerTests
{
    [Fact]
    public async Task UnderLoadItRaisesTheThresholdOfDefaultRequestsOnlyLogsAndReturns()
    {
        // Threshold 0 makes every default token iterate at rest, so any depth-1 token of theirs is elastic depth's doing.
        await using var server = await TestServer.StartAsync(new()
        {
            ["Server:ElasticDepth"] = "true",
            ["Server:ElasticMinShare"] = "0.05",
            ["Server:ElasticIntervalSeconds"] = "0",
            ["Server:Threshold"] = "0",
            ["Server:MaxRunning"] = "1",
        });
        var metrics = await server.Http.GetStringAsync("/metrics");
        Assert.Equal(0, Gauge(metrics, "tah_elastic_threshold"));

        object Body(object? tah) => new { prompt = "Tell me", max_tokens = 24, temperature = 0, ignore_eos = true, tah };
        var governed = Enumerable.Range(0, 5).Select(_ => server.PostAsync("/v1/completions", Body(null))).ToList();
        var own = server.PostAsync("/v1/completions", Body(new { threshold = 0.0 }));
        var results = await Task.WhenAll([.. governed, own]);
        Assert.All(results, r => Assert.Equal(200, r.Status));
        await server.AssertEngineIdleAsync();

        int[] DepthsOf(JsonNode body) => [.. body["choices"]![0]!["tah"]!["depths"]!.AsArray().Select(d => (int)d!)];
        Assert.All(DepthsOf(results[^1].Body!), d => Assert.Equal(2, d)); // its own threshold won
        Assert.Contains(results[..^1], r => DepthsOf(r.Body!).Contains(1)); // the queued ones yielded

        var lines = server.Logs.Events.Select(e => e.RenderMessage(CultureInfo.InvariantCulture)).Where(m => m.StartsWith("Elastic depth:", StringComparison.Ordinal)).ToList();
        Assert.Contains(lines, l => l.Contains("now run at threshold", StringComparison.Ordinal));
        Assert.Contains("back to the default threshold 0", lines[^1], StringComparison.Ordinal);

        metrics = await server.Http.GetStringAsync("/metrics");
        Assert.Equal(0, Gauge(metrics, "tah_elastic_threshold")); // returned once the load ended
        Assert.InRange(Gauge(metrics, "tah_elastic_target_share"), 0.999, 1.0); // threshold 0: every default token iterates at rest
    }

    private static double Gauge(string metrics, string name)
    {
        var line = metrics.Split('\n').First(l => l.StartsWith(name + "{", StringComparison.Ordinal) || l.StartsWith(name + " ", StringComparison.Ordinal));
        return double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
    }
}
