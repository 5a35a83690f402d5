using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;

namespace TaH.Deploy.Tests;

/// <summary>
/// The monitoring stack of docker-compose.yml without the containers: the real tah server run as
/// the image runs it, Debian's Prometheus with deploy/prometheus.yml scraping it every second, and
/// traffic from several clients (all three policies, a shared system prompt for the prefix cache,
/// a KV pool small enough to preempt, more clients than running slots so requests queue) until
/// every query of the dashboard has drawn a non-zero value, or a deadline. Then one last scrape,
/// and every dashboard query once more as an instant query, as Grafana sends them.
/// </summary>
public sealed class StackFixture : IAsyncLifetime
{
    /// <summary>The model directory's name: docker-compose.yml mounts the model at /models/tah.</summary>
    public const string ModelDirectoryName = "tah";

    /// <summary>Grafana's macros as concrete durations (a 1 s scrape interval makes $__rate_interval at least 4 s).</summary>
    public static readonly IReadOnlyDictionary<string, string> Macros = new Dictionary<string, string>
    {
        ["__rate_interval"] = "1m",
        ["__interval"] = "5s",
        ["__range"] = "10m",
    };

    // null: the server's default (with --elastic-depth, the requests whose threshold yields under load).
    private static readonly string?[] Policies = ["decider", "always", "never", null];

    // Long enough to fill whole KV blocks (16 tokens) that later requests take from the prefix cache.
    private const string SystemPrompt =
        "You are a careful assistant for a team that runs inference servers. Answer in plain words, keep to the facts, " +
        "say when you are unsure, and show the steps of any calculation so that a reader can check them one by one.";

    private string _root = "";

    internal ImageProcess Server { get; private set; } = null!;

    internal PrometheusServer Prometheus { get; private set; } = null!;

    internal Dashboard Dashboard { get; } = Dashboard.Load();

    /// <summary>Values of the dashboard's variables, resolved through Prometheus as Grafana resolves them.</summary>
    internal Dictionary<string, string> Variables { get; } = [];

    internal string[] ModelValues { get; private set; } = [];

    /// <summary>Queries whose value was never finite and above zero while the traffic ran.</summary>
    internal List<PanelQuery> NeverNonZero { get; } = [];

    /// <summary>The instant query of each dashboard expression after the traffic, as Grafana sends it.</summary>
    internal Dictionary<PanelQuery, QueryResult> Instant { get; } = [];

    /// <summary>/metrics of the server after the traffic.</summary>
    internal string MetricsText { get; private set; } = "";

    internal int Succeeded { get; private set; }

    internal List<string> Failures { get; } = [];

    internal TimeSpan TrafficDuration { get; private set; }

    /// <summary>
    /// The server's flags beyond the image's command: a small pool and few running slots, so the
    /// load shows; elastic depth on, over a default threshold of 0 (every default token iterates
    /// at rest), so the queue visibly raises the threshold and lowers the share.
    /// </summary>
    internal static readonly string[] ServerFlags =
        ["--kv-blocks", "40", "--max-running", "3", "--max-waiting", "64", "--elastic-depth", "--elastic-interval", "0.2", "--threshold", "0"];

    public string Substitute(string expr) => PromQl.Substitute(expr, Macros, Variables);

    public async Task InitializeAsync()
    {
        _root = Path.Combine(Path.GetTempPath(), "tah-deploy-tests-" + Guid.NewGuid().ToString("N")[..8]);
        var models = Path.Combine(_root, "models");
        await ImageProcess.CreateModelAsync(Path.Combine(models, ModelDirectoryName));
        Server = await ImageProcess.StartAsync(models, ServerFlags);
        Prometheus = await PrometheusServer.StartAsync($"127.0.0.1:{Server.Port.ToString(CultureInfo.InvariantCulture)}");
        await WaitAsync(async () => (await Prometheus.ActiveTargetsAsync()).Any(t => (string?)t!["health"] == "up"), TimeSpan.FromSeconds(60), "the tah target to be up");

        // The dashboard's model variable, as Grafana resolves label_values(metric, label).
        var variable = Dashboard.Variable("model");
        var (metric, label) = LabelValuesQuery(variable);
        ModelValues = await Prometheus.LabelValuesAsync(label, metric);
        Variables["model"] = PromQl.RegexAlternation(ModelValues);
        Variables["datasource"] = "prometheus";

        var queries = Dashboard.Queries().ToList();
        var pending = new HashSet<PanelQuery>(queries);
        var start = DateTimeOffset.UtcNow;
        using var stop = new CancellationTokenSource();
        var clients = Enumerable.Range(0, 6).Select(i => ClientAsync(i, stop.Token)).ToList();
        var clock = Stopwatch.StartNew();
        while (pending.Count > 0 && clock.Elapsed < TimeSpan.FromSeconds(180))
        {
            await Task.Delay(1000);
            foreach (var query in pending.ToList())
            {
                var result = await Prometheus.QueryRangeAsync(Substitute(query.Expr), start.AddSeconds(-5), DateTimeOffset.UtcNow, TimeSpan.FromSeconds(1));
                if (result.Series.Any(s => s.Values.Any(v => double.IsFinite(v) && v > 0)))
                {
                    pending.Remove(query);
                }
            }
        }

        TrafficDuration = clock.Elapsed;
        NeverNonZero.AddRange(pending);
        await stop.CancelAsync();
        await Task.WhenAll(clients);

        // A scrape that saw the end of the traffic, then every query as Grafana's instant query.
        var ended = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
        await WaitAsync(async () =>
        {
            var r = await Prometheus.QueryAsync("max(timestamp(tah_kv_blocks_total))");
            return r.Series.Count == 1 && r.Series[0].Values[0] > ended + 1;
        }, TimeSpan.FromSeconds(30), "a scrape after the traffic");
        foreach (var query in queries)
        {
            Instant[query] = await Prometheus.QueryAsync(Substitute(query.Expr));
        }

        MetricsText = await Server.Http.GetStringAsync("/metrics");
    }

    /// <summary>(metric, label) of a variable's label_values(metric, label) query.</summary>
    internal static (string Metric, string Label) LabelValuesQuery(System.Text.Json.Nodes.JsonObject variable)
    {
        var query = variable["query"] is System.Text.Json.Nodes.JsonObject q ? (string)q["query"]! : (string)variable["query"]!;
        var m = System.Text.RegularExpressions.Regex.Match(query, @"^label_values\(\s*([^,]+?)\s*,\s*(\w+)\s*\)$");
        Assert.True(m.Success, $"the variable's query is not label_values(metric, label): {query}");
        return (m.Groups[1].Value, m.Groups[2].Value);
    }

    private async Task ClientAsync(int client, CancellationToken stop)
    {
        var random = new Random(client);
        for (int k = 0; !stop.IsCancellationRequested; k++)
        {
            var policy = Policies[(client + k) % Policies.Length];
            bool stream = (client + k) % 4 == 0;
            var body = new
            {
                messages = new object[]
                {
                    new { role = "system", content = SystemPrompt },
                    new { role = "user", content = $"Question {client}.{k}: how many tokens will this take?" },
                },
                max_tokens = 48 + (16 * random.Next(5)),
                ignore_eos = true,
                temperature = 0.8,
                seed = (client * 1000) + k,
                stream,
                tah = new { policy },
            };
            try
            {
                using var response = await Server.Http.PostAsJsonAsync("/v1/chat/completions", body, stop);
                var text = await response.Content.ReadAsStringAsync(stop);
                lock (Failures)
                {
                    if (response.IsSuccessStatusCode)
                    {
                        Succeeded++;
                    }
                    else
                    {
                        Failures.Add($"{(int)response.StatusCode}: {text}");
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (HttpRequestException e)
            {
                lock (Failures)
                {
                    Failures.Add(e.Message);
                }
            }
        }
    }

    private static async Task WaitAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (await condition())
            {
                return;
            }

            await Task.Delay(250);
        }

        throw new TimeoutException($"waited {timeout.TotalSeconds} s for {what}");
    }

    public async Task DisposeAsync()
    {
        if (Prometheus is not null)
        {
            await Prometheus.DisposeAsync();
        }

        if (Server is not null)
        {
            await Server.DisposeAsync();
        }

        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
