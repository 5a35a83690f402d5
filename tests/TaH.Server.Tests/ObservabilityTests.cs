using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Serilog.Events;
using TaH.Engine.TaH;

namespace TaH.Server.Tests;

/// <summary>/metrics (Prometheus), the structured request log, traces, OpenAPI and the probes.</summary>
[Collection(ServerCollection.Name)]
public sealed partial class ObservabilityTests(SharedServer shared)
{
    private readonly TestServer _server = shared.Server;

    [Fact]
    public async Task MetricsCountTokensByDepthAsTheResponsesReportThem()
    {
        var before = await ScrapeAsync();
        var prompts = new[] { "One", "Two two", "Three three three" };
        var runs = new (string Policy, double? Threshold, int Tokens)[] { ("always", null, 6), ("never", null, 5), ("decider", 0.089, 7) };
        var responses = new List<JsonNode>();
        for (int i = 0; i < runs.Length; i++)
        {
            var (policy, threshold, tokens) = runs[i];
            var (status, json) = await _server.PostAsync("/v1/chat/completions", new
            {
                messages = new[] { new { role = "user", content = prompts[i] } },
                max_tokens = tokens,
                temperature = 0,
                ignore_eos = true,
                tah = new { policy, threshold },
            });
            Assert.Equal(200, status);
            responses.Add(json!);
        }

        await _server.AssertEngineIdleAsync();
        var after = await ScrapeAsync();
        double Delta(string series) => after.GetValueOrDefault(series) - before.GetValueOrDefault(series);

        for (int i = 0; i < runs.Length; i++)
        {
            var depths = responses[i]["choices"]![0]!["tah"]!["depths"]!.AsArray().Select(d => (int)d!).ToList();
            Assert.Equal(runs[i].Tokens, depths.Count);
            string policyTag = runs[i].Policy;
            Assert.Equal(depths.Count(d => d == 1), Delta($"tah_tokens_by_depth_total{{depth=\"1\",policy=\"{policyTag}\"}}"));
            Assert.Equal(depths.Count(d => d == 2), Delta($"tah_tokens_by_depth_total{{depth=\"2\",policy=\"{policyTag}\"}}"));
            Assert.Equal(1, Delta($"tah_requests_total{{finish_reason=\"length\",policy=\"{policyTag}\"}}"));
        }

        Assert.Equal(6, Delta("tah_tokens_by_depth_total{depth=\"2\",policy=\"always\"}"));
        Assert.Equal(5, Delta("tah_tokens_by_depth_total{depth=\"1\",policy=\"never\"}"));
        Assert.Equal(18, Delta("tah_generation_tokens_total"));
        Assert.Equal(responses.Sum(r => (int)r["usage"]!["prompt_tokens"]!), Delta("tah_prompt_tokens_total"));
        Assert.Equal(3, Delta("tah_time_to_first_token_seconds_count"));
        Assert.Equal(3, Delta("tah_request_latency_seconds_count"));
        Assert.Equal(5 + 4 + 6, Delta("tah_inter_token_latency_seconds_count"));

        // The decider's probabilities: one per token whose first pass ran the decider, as the engine reports them.
        int expectedProbabilities = 0;
        for (int i = 0; i < runs.Length; i++)
        {
            var policy = IterationPolicy.Parse(runs[i].Policy, runs[i].Threshold);
            var prompt = Reference.ChatPrompt(prompts[i]);
            expectedProbabilities += Reference.Greedy(prompt, runs[i].Tokens, policy).Events.Count(e => e.ContinueProbability is not null);
        }

        Assert.Equal(expectedProbabilities, Delta("tah_decider_continue_probability_count"));
        Assert.Equal(0, after["tah_requests_running"]);
        Assert.Equal(0, after["tah_requests_waiting"]);
        Assert.Equal(_server.Host.Engine.Cache.TotalBlocks, after["tah_kv_blocks_total"]);
        Assert.Equal(0, after["tah_kv_blocks_used{depth=\"2\"}"]);
        Assert.InRange(after["tah_depth2_share"], 0, 1);
        Assert.True(Delta("http_server_request_duration_seconds_count{http_request_method=\"POST\",http_response_status_code=\"200\",http_route=\"/v1/chat/completions\",network_protocol_version=\"1.1\",url_scheme=\"http\"}") >= 3);
    }

    [Fact]
    public async Task EveryTaHMetricIsDocumentedInTheReadmeAndEveryDocumentedOneIsScraped()
    {
        // Make sure every instrument has a value.
        var (status, _) = await _server.PostAsync("/v1/chat/completions", new { messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 3, tah = new { policy = "always" } });
        Assert.Equal(200, status);
        var scraped = (await ScrapeAsync()).Keys.Select(BaseName).Where(n => !n.StartsWith("dotnet_", StringComparison.Ordinal) && n != "target_info").ToHashSet();

        var readme = File.ReadAllText(Repo.Path("README.md"));
        int start = readme.IndexOf("### Metrics", StringComparison.Ordinal);
        Assert.True(start >= 0, "README has no '### Metrics' section");
        int end = readme.IndexOf("\n## ", start, StringComparison.Ordinal);
        var section = readme[start..(end < 0 ? readme.Length : end)];
        var documented = MetricName().Matches(section).Select(m => m.Groups[1].Value).ToHashSet();

        Assert.Empty(scraped.Where(n => n.StartsWith("tah_", StringComparison.Ordinal)).Except(documented));
        Assert.Empty(documented.Except(scraped));
    }

    [Fact]
    public async Task EachGenerationIsLoggedWithItsFiguresAndTraced()
    {
        var spans = new List<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == Api.Telemetry.SourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => { lock (spans) { spans.Add(a); } },
        };
        ActivitySource.AddActivityListener(listener);

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new { messages = new[] { new { role = "user", content = "Log me" } }, max_tokens = 4, tah = new { policy = "always" }, user = "tester" }),
        };
        request.Headers.Add("X-Request-Id", "req-logged-1");
        using var response = await _server.Http.SendAsync(request);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("req-logged-1", response.Headers.GetValues("X-Request-Id").Single());
        var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;

        LogEvent? logged = null;
        await LimitsTests.WaitUntil(() => (logged = _server.Logs.Events.LastOrDefault(e => Scalar(e, "RequestId") as string == "req-logged-1")) is not null);
        Assert.Equal(LogEventLevel.Information, logged!.Level);
        Assert.Equal(TestModel.Name, Scalar(logged, "Model"));
        Assert.Equal((int)json["usage"]!["prompt_tokens"]!, Scalar(logged, "PromptTokens"));
        Assert.Equal(4, Scalar(logged, "CompletionTokens"));
        Assert.Equal(4, Scalar(logged, "Depth2Tokens"));
        Assert.Equal(1.0, Scalar(logged, "Depth2Share"));
        Assert.IsType<double>(Scalar(logged, "LatencyMs"));
        Assert.Equal("tester", Scalar(logged, "User"));

        Activity? span;
        lock (spans)
        {
            span = spans.LastOrDefault(a => a.GetTagItem("gen_ai.response.id") as string == (string)json["id"]!);
        }

        Assert.NotNull(span);
        Assert.Equal("chat.completions", span.OperationName);
        Assert.Equal(4, span.GetTagItem("gen_ai.usage.output_tokens"));
        Assert.Equal(4, span.GetTagItem("tah.depth2_tokens"));
        Assert.Equal("always", span.GetTagItem("tah.policy"));
    }

    [Fact]
    public async Task OpenApiSwaggerUiProbesModelsAndThePageAreServed()
    {
        var doc = JsonNode.Parse(await _server.Http.GetStringAsync("/openapi/v1.json"))!;
        foreach (var path in new[] { "/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/ready" })
        {
            Assert.NotNull(doc["paths"]![path]);
        }

        var schemas = doc["components"]!["schemas"]!;
        Assert.NotNull(schemas["ChatCompletionRequest"]!["properties"]!["max_completion_tokens"]);
        Assert.NotNull(schemas["TaHUsage"]!["properties"]!["depth2_tokens"]);
        Assert.NotNull(schemas["TaHTokens"]!["properties"]!["depths"]);
        Assert.Equal("#/components/schemas/ChatCompletionRequest",
            (string)doc["paths"]!["/v1/chat/completions"]!["post"]!["requestBody"]!["content"]!["application/json"]!["schema"]!["$ref"]!);

        using var ui = await _server.Http.GetAsync("/docs/index.html");
        Assert.Equal(200, (int)ui.StatusCode);
        Assert.Contains("swagger-ui", await ui.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        var health = JsonNode.Parse(await _server.Http.GetStringAsync("/health"))!;
        Assert.Equal("ok", (string)health["status"]!);
        var ready = JsonNode.Parse(await _server.Http.GetStringAsync("/ready"))!;
        Assert.Equal("ready", (string)ready["status"]!);

        var models = JsonNode.Parse(await _server.Http.GetStringAsync("/v1/models"))!;
        Assert.Equal("list", (string)models["object"]!);
        var card = models["data"]!.AsArray().Single()!;
        Assert.Equal(TestModel.Name, (string)card["id"]!);
        Assert.Equal("model", (string)card["object"]!);
        Assert.Equal("tah", (string)card["owned_by"]!);
        Assert.Equal(2048, (int)card["max_model_len"]!);
        Assert.Equal(Reference.Model.MaxDepth, (int)card["tah"]!["max_depth"]!);
        Assert.Equal(Reference.Model.Decider!.Threshold, (double)card["tah"]!["threshold"]!);
        var one = JsonNode.Parse(await _server.Http.GetStringAsync($"/v1/models/{TestModel.Name}"))!;
        Assert.Equal(TestModel.Name, (string)one["id"]!);

        using var page = await _server.Http.GetAsync("/");
        Assert.Equal("text/html", page.Content.Headers.ContentType!.MediaType);
        var html = await page.Content.ReadAsStringAsync();
        Assert.Contains("/v1/chat/completions", html, StringComparison.Ordinal);
        Assert.DoesNotContain("http://", html, StringComparison.Ordinal); // self-contained: nothing from elsewhere
        Assert.DoesNotContain("https://", html, StringComparison.Ordinal);
    }

    private async Task<Dictionary<string, double>> ScrapeAsync()
    {
        var text = await _server.Http.GetStringAsync("/metrics");
        var series = new Dictionary<string, double>();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            var m = SeriesLine().Match(line);
            Assert.True(m.Success, $"unparsed line: {line}");
            var labels = m.Groups[2].Success
                ? LabelPair().Matches(m.Groups[2].Value).Select(l => (l.Groups[1].Value, l.Groups[2].Value)).Where(l => l.Item1 != "otel_scope_name" && l.Item1 != "otel_scope_version").OrderBy(l => l.Item1, StringComparer.Ordinal).ToList()
                : [];
            var key = labels.Count == 0 ? m.Groups[1].Value : $"{m.Groups[1].Value}{{{string.Join(",", labels.Select(l => $"{l.Item1}=\"{l.Item2}\""))}}}";
            var value = double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
            series[key] = series.GetValueOrDefault(key) + value; // the same series from several meter scopes adds up
        }

        return series;
    }

    private static string BaseName(string series)
    {
        var name = series.Split('{')[0];
        foreach (var suffix in new[] { "_bucket", "_sum", "_count" })
        {
            if (name.EndsWith(suffix, StringComparison.Ordinal))
            {
                return name[..^suffix.Length];
            }
        }

        return name;
    }

    private static object? Scalar(LogEvent e, string name) =>
        e.Properties.TryGetValue(name, out var value) && value is ScalarValue s ? s.Value : null;

    [GeneratedRegex(@"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([^ ]+)(?: \d+)?$")]
    private static partial Regex SeriesLine();

    [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)=""((?:[^""\\]|\\.)*)""")]
    private static partial Regex LabelPair();

    [GeneratedRegex(@"^\| `([a-z][a-z0-9_]+)` \|", RegexOptions.Multiline)]
    private static partial Regex MetricName();
}
