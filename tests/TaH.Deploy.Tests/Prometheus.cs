using System.Globalization;
using System.Text.Json.Nodes;
using YamlDotNet.RepresentationModel;

namespace TaH.Deploy.Tests;

/// <summary>One series of a query result: its labels and its values (one for an instant query).</summary>
internal sealed record Series(IReadOnlyDictionary<string, string> Labels, IReadOnlyList<double> Values);

/// <summary>The answer of /api/v1/query or /api/v1/query_range.</summary>
internal sealed record QueryResult(string Status, string? Error, string ResultType, IReadOnlyList<Series> Series);

/// <summary>
/// Debian's Prometheus server on a loopback port, with the project's deploy/prometheus.yml: the
/// scrape target rewritten to the test's server and the interval to 1 s, nothing else changed.
/// </summary>
internal sealed class PrometheusServer : IAsyncDisposable
{
    private readonly ChildProcess _process;
    private readonly string _dir;

    private PrometheusServer(ChildProcess process, string dir, Uri baseAddress, string config)
    {
        _process = process;
        _dir = dir;
        BaseAddress = baseAddress;
        Config = config;
        Http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(30) };
    }

    public static string Binary => Environment.GetEnvironmentVariable("TAH_PROMETHEUS") ?? Tool.Require("prometheus", "prometheus");

    public Uri BaseAddress { get; }

    /// <summary>The configuration it runs with (the rewritten copy).</summary>
    public string Config { get; }

    public HttpClient Http { get; }

    public string Log => _process.Log;

    /// <summary>deploy/prometheus.yml with its one static target pointed at <paramref name="target"/>, scraped every second.</summary>
    public static string RewriteConfig(string target)
    {
        var yaml = new YamlStream();
        yaml.Load(new StringReader(Repo.Read("deploy", "prometheus.yml")));
        var root = (YamlMappingNode)yaml.Documents[0].RootNode;
        var global = (YamlMappingNode)root["global"];
        global.Children[new YamlScalarNode("scrape_interval")] = new YamlScalarNode("1s");
        global.Children[new YamlScalarNode("evaluation_interval")] = new YamlScalarNode("1s");
        var jobs = (YamlSequenceNode)root["scrape_configs"];
        var job = (YamlMappingNode)Assert.Single(jobs.Children);
        job.Children.Remove(new YamlScalarNode("scrape_interval"));
        var staticConfig = (YamlMappingNode)Assert.Single(((YamlSequenceNode)job["static_configs"]).Children);
        staticConfig.Children[new YamlScalarNode("targets")] = new YamlSequenceNode(new YamlScalarNode(target));
        var writer = new StringWriter(CultureInfo.InvariantCulture);
        yaml.Save(writer, assignAnchors: false);
        return writer.ToString();
    }

    public static async Task<PrometheusServer> StartAsync(string target)
    {
        var binary = Binary;
        var dir = Path.Combine(Path.GetTempPath(), "tah-prometheus-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(Path.Combine(dir, "data"));
        var config = RewriteConfig(target);
        var configPath = Path.Combine(dir, "prometheus.yml");
        await File.WriteAllTextAsync(configPath, config);
        int port = Tool.FreeLoopbackPort();
        var process = ChildProcess.Start(binary,
        [
            $"--config.file={configPath}",
            $"--storage.tsdb.path={Path.Combine(dir, "data")}",
            $"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ], new Dictionary<string, string?>());
        var server = new PrometheusServer(process, dir, new Uri($"http://127.0.0.1:{port}"), config);
        for (int i = 0; i < 300; i++)
        {
            Assert.False(process.Process.HasExited, "prometheus exited: " + process.Log);
            try
            {
                using var ready = await server.Http.GetAsync("/-/ready");
                if (ready.IsSuccessStatusCode)
                {
                    return server;
                }
            }
            catch (HttpRequestException)
            {
            }

            await Task.Delay(100);
        }

        await server.DisposeAsync();
        throw new TimeoutException("prometheus did not become ready: " + process.Log);
    }

    /// <summary>The scrape targets and their health.</summary>
    public async Task<JsonArray> ActiveTargetsAsync()
    {
        var json = JsonNode.Parse(await Http.GetStringAsync("/api/v1/targets"))!;
        return json["data"]!["activeTargets"]!.AsArray();
    }

    /// <summary>An instant query, evaluated now.</summary>
    public Task<QueryResult> QueryAsync(string expr) =>
        SendAsync("/api/v1/query", [new("query", expr)]);

    public Task<QueryResult> QueryRangeAsync(string expr, DateTimeOffset start, DateTimeOffset end, TimeSpan step) =>
        SendAsync("/api/v1/query_range",
        [
            new("query", expr),
            new("start", (start.ToUnixTimeMilliseconds() / 1000.0).ToString(CultureInfo.InvariantCulture)),
            new("end", (end.ToUnixTimeMilliseconds() / 1000.0).ToString(CultureInfo.InvariantCulture)),
            new("step", step.TotalSeconds.ToString(CultureInfo.InvariantCulture)),
        ]);

    /// <summary>The values of a label on the series that match <paramref name="match"/>, as Grafana's label_values() asks.</summary>
    public async Task<string[]> LabelValuesAsync(string label, string match)
    {
        var json = JsonNode.Parse(await Http.GetStringAsync($"/api/v1/label/{label}/values?match[]={Uri.EscapeDataString(match)}"))!;
        Assert.Equal("success", (string?)json["status"]);
        return json["data"]!.AsArray().Select(v => (string)v!).ToArray();
    }

    private async Task<QueryResult> SendAsync(string path, List<KeyValuePair<string, string>> form)
    {
        using var response = await Http.PostAsync(path, new FormUrlEncodedContent(form));
        var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        var status = (string)json["status"]!;
        if (status != "success")
        {
            return new QueryResult(status, (string?)json["error"], "", []);
        }

        var data = json["data"]!;
        var type = (string)data["resultType"]!;
        var series = new List<Series>();
        if (type is "vector" or "matrix")
        {
            foreach (var item in data["result"]!.AsArray())
            {
                var labels = item!["metric"]!.AsObject().ToDictionary(kv => kv.Key, kv => (string)kv.Value!);
                var points = type == "vector" ? [item["value"]!] : item["values"]!.AsArray().ToList();
                series.Add(new Series(labels, points.Select(p => Parse((string)p![1]!)).ToList()));
            }
        }
        else if (type == "scalar")
        {
            series.Add(new Series(new Dictionary<string, string>(), [Parse((string)data["result"]![1]!)]));
        }

        return new QueryResult(status, null, type, series);
    }

    private static double Parse(string value) => value switch
    {
        "NaN" => double.NaN,
        "+Inf" => double.PositiveInfinity,
        "-Inf" => double.NegativeInfinity,
        _ => double.Parse(value, CultureInfo.InvariantCulture),
    };

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _process.DisposeAsync();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
