using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using YamlDotNet.RepresentationModel;

namespace TaH.Deploy.Tests;

/// <summary>
/// The observability stack with real parts: the tah server as the image runs it, Debian's
/// Prometheus with the project's configuration, and the Grafana dashboard's queries sent
/// through Prometheus's HTTP API.
/// </summary>
public sealed partial class StackTests(StackFixture stack, ITestOutputHelper output) : IClassFixture<StackFixture>
{
    [Fact]
    public async Task PrometheusScrapesTheServerWithTheProjectsConfiguration()
    {
        var target = Assert.Single(await stack.Prometheus.ActiveTargetsAsync())!;
        Assert.Equal("up", (string?)target["health"]);
        Assert.Equal($"http://127.0.0.1:{stack.Server.Port.ToString(CultureInfo.InvariantCulture)}/metrics", (string?)target["scrapeUrl"]);

        // The "model" target label of deploy/prometheus.yml is the name the server serves.
        var served = JsonNode.Parse(await stack.Server.Http.GetStringAsync("/v1/models"))!["data"]!.AsArray().Single()!["id"]!.ToString();
        Assert.Equal(served, (string?)target["labels"]!["model"]);
        Assert.Equal([served], stack.ModelValues);
    }

    [Fact]
    public void EveryDashboardQueryParsesAndReturnsDataThroughPrometheus()
    {
        var panels = stack.Dashboard.DataPanels().ToList();
        Assert.NotEmpty(panels);
        var problems = new List<string>();
        foreach (var panel in panels)
        {
            var title = (string)panel["title"]!;
            var targets = panel["targets"]?.AsArray() ?? [];
            if (targets.Count == 0 || targets.Any(t => string.IsNullOrWhiteSpace((string?)t!["expr"])))
            {
                problems.Add($"{title}: a panel without a query");
            }
        }

        foreach (var (query, result) in stack.Instant)
        {
            var what = $"{query.Panel} [{query.RefId}] {stack.Substitute(query.Expr)}";
            if (result.Status != "success")
            {
                problems.Add($"{what}: {result.Error}");
            }
            else if (result.Series.Count == 0)
            {
                problems.Add($"{what}: no data");
            }
            else if (!result.Series.Any(s => s.Values.Any(double.IsFinite)))
            {
                problems.Add($"{what}: no finite value");
            }
        }

        Assert.Equal(stack.Dashboard.Queries().Count(), stack.Instant.Count);
        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    [Fact]
    public void EveryDashboardQueryDrewANonZeroValueWhileTheTrafficRan()
    {
        Assert.True(stack.NeverNonZero.Count == 0,
            $"after {stack.TrafficDuration.TotalSeconds:0} s of traffic ({stack.Succeeded} requests), still zero or empty:\n" +
            string.Join('\n', stack.NeverNonZero.Select(q => $"{q.Panel} [{q.RefId}] {stack.Substitute(q.Expr)}")));
    }

    [Fact]
    public void TheTrafficWasServedWithoutErrors()
    {
        output.WriteLine($"{stack.Succeeded} requests in {stack.TrafficDuration.TotalSeconds:0.0} s of traffic; {stack.Instant.Count} dashboard queries");
        Assert.True(stack.Failures.Count == 0, string.Join('\n', stack.Failures.Take(5)));
        Assert.True(stack.Succeeded > 0, "no request finished"); // the rest were cancelled when every panel had drawn
    }

    [Fact]
    public async Task TheDashboardReadsOnlyMetricsTheServerExportsAndShowsEveryTaHMetric()
    {
        var scraped = MetricsTextNames(stack.MetricsText);
        var used = stack.Dashboard.Queries().SelectMany(q => PromQl.MetricNames(stack.Substitute(q.Expr))).ToHashSet();
        foreach (var variable in stack.Dashboard.Variables().Where(v => (string?)v["type"] == "query"))
        {
            used.Add(StackFixture.LabelValuesQuery(variable).Metric);
        }

        Assert.Empty(used.Except(scraped));
        var ingested = (await stack.Prometheus.LabelValuesAsync("__name__", "{job=~\".+\"}")).ToHashSet();
        Assert.Empty(used.Except(ingested));

        // Every TaH family the server exports has a place on the dashboard (a histogram through its series).
        var families = TypeLine().Matches(stack.MetricsText).Select(m => m.Groups[1].Value).Where(n => n.StartsWith("tah_", StringComparison.Ordinal)).ToHashSet();
        Assert.NotEmpty(families);
        var missing = families.Where(f => !used.Any(u => u == f || u == f + "_total" || u == f + "_bucket" || u == f + "_count" || u == f + "_sum")).ToList();
        Assert.True(missing.Count == 0, "TaH metrics no panel shows: " + string.Join(", ", missing));
    }

    [Fact]
    public async Task TheAdapterRulesForTheAutoscalerRunOnTheServersSeries()
    {
        var scraped = MetricsTextNames(stack.MetricsText);
        var values = Yaml.LoadFile(Repo.Path("deploy", "k8s", "prometheus-adapter-values.yaml"));
        var rules = (YamlSequenceNode)values["rules"]["custom"];
        Assert.NotEmpty(rules.Children);
        foreach (YamlMappingNode rule in rules.Children)
        {
            var seriesQuery = ((YamlScalarNode)rule["seriesQuery"]).Value!;
            var series = Regex.Match(seriesQuery, @"^[A-Za-z_:][\w:]*").Value;
            Assert.Contains(series, scraped);

            // The adapter fills in the series, the pod's label matchers and the grouping; here the
            // test's target stands for the pod (Prometheus Operator adds namespace and pod labels).
            var query = ((YamlScalarNode)rule["metricsQuery"]).Value!
                .Replace("<<.Series>>", series, StringComparison.Ordinal)
                .Replace("<<.LabelMatchers>>", $"model=\"{StackFixture.ModelDirectoryName}\"", StringComparison.Ordinal)
                .Replace("<<.GroupBy>>", "instance", StringComparison.Ordinal);
            Assert.Empty(PromQl.MetricNames(query).Except(scraped));
            var result = await stack.Prometheus.QueryAsync(query);
            Assert.True(result.Status == "success", $"{query}: {result.Error}");
            var one = Assert.Single(result.Series);
            Assert.True(double.IsFinite(one.Values[0]) && one.Values[0] >= 0, $"{query} = {one.Values[0]}");
        }
    }

    [Fact]
    public async Task TheImageHealthCheckPassesOnTheServerAndFailsWithoutOne()
    {
        var check = Dockerfile.Load(Repo.Path("Dockerfile")).Final.Last("HEALTHCHECK")!.Arguments;
        var command = Regex.Match(check, @"\bCMD\s+(.+)$").Groups[1].Value;
        Assert.NotEmpty(command);
        var shell = Tool.Require("sh", "dash");

        var up = await Tool.RunAsync(shell, ["-c", command], stack.Server.Environment.ToDictionary());
        Assert.True(up.ExitCode == 0, $"the health check failed on a running server: {up.All}");

        var down = await Tool.RunAsync(shell, ["-c", command], ImageProcess.ImageEnvironment(Dockerfile.Load(Repo.Path("Dockerfile")), Tool.FreeLoopbackPort()));
        Assert.NotEqual(0, down.ExitCode);
    }

    [Fact]
    public async Task TheKubernetesProbesAndTheScrapePathAnswerOnTheServer()
    {
        var deployment = Manifests.Load().Single(m => m.Kind == "Deployment");
        var container = (YamlMappingNode)((YamlSequenceNode)deployment.Root["spec"]["template"]["spec"]["containers"]).Children[0];
        var probes = new[] { "startupProbe", "livenessProbe", "readinessProbe" }
            .Where(p => container.Children.ContainsKey(p))
            .Select(p => (p, ((YamlScalarNode)container[p]["httpGet"]["path"]).Value!)).ToList();
        Assert.Contains(probes, p => p.Item1 == "readinessProbe");
        Assert.Contains(probes, p => p.Item1 == "livenessProbe");
        foreach (var (probe, path) in probes)
        {
            using var response = await stack.Server.Http.GetAsync(path);
            Assert.True(response.IsSuccessStatusCode, $"{probe} {path}: {(int)response.StatusCode}");
        }

        var monitor = Manifests.Load().Single(m => m.Kind == "ServiceMonitor");
        foreach (YamlMappingNode endpoint in ((YamlSequenceNode)monitor.Root["spec"]["endpoints"]).Children)
        {
            var text = await stack.Server.Http.GetStringAsync(((YamlScalarNode)endpoint["path"]).Value!);
            Assert.Contains("tah_requests_running", text, StringComparison.Ordinal);
        }
    }

    /// <summary>The series names in Prometheus text (histograms as their _bucket, _sum and _count series).</summary>
    internal static HashSet<string> MetricsTextNames(string text) =>
        text.Split('\n').Where(l => l.Length > 0 && l[0] != '#').Select(l => SeriesName().Match(l).Value).Where(n => n.Length > 0).ToHashSet();

    [GeneratedRegex(@"^[A-Za-z_:][\w:]*")]
    private static partial Regex SeriesName();

    [GeneratedRegex(@"^# TYPE (\S+) ", RegexOptions.Multiline)]
    private static partial Regex TypeLine();
}
