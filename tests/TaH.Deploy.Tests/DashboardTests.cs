namespace TaH.Deploy.Tests;

/// <summary>
/// The Grafana dashboard as a file: valid JSON in Grafana's dashboard model, laid out on its
/// 24-column grid, every query on the provisioned Prometheus, and the views the issue asks for.
/// (StackTests runs every query through a real Prometheus.)
/// </summary>
public sealed class DashboardTests
{
    private readonly Dashboard _dashboard = Dashboard.Load();

    [Fact]
    public void TheDashboardIsAGrafanaDashboardWithUniquePanelsOnTheGrid()
    {
        var json = _dashboard.Json;
        Assert.False(string.IsNullOrWhiteSpace((string?)json["uid"]));
        Assert.False(string.IsNullOrWhiteSpace((string?)json["title"]));
        Assert.True((int)json["schemaVersion"]! >= 36, "a dashboard model of Grafana 9 or later");

        var panels = _dashboard.Panels().ToList();
        Assert.Equal(panels.Count, panels.Select(p => (int)p["id"]!).Distinct().Count());
        HashSet<string> types = ["row", "timeseries", "stat", "bargauge", "heatmap", "gauge", "table"];
        var occupied = new HashSet<(int X, int Y)>();
        foreach (var panel in panels)
        {
            var title = (string?)panel["title"];
            Assert.Contains((string)panel["type"]!, types);
            var grid = panel["gridPos"]!;
            int x = (int)grid["x"]!, y = (int)grid["y"]!, w = (int)grid["w"]!, h = (int)grid["h"]!;
            Assert.True(x >= 0 && w > 0 && x + w <= 24 && h > 0, $"{title}: gridPos {grid.ToJsonString()} is off the 24-column grid");
            for (int i = x; i < x + w; i++)
            {
                for (int j = y; j < y + h; j++)
                {
                    Assert.True(occupied.Add((i, j)), $"{title} overlaps another panel at ({i}, {j})");
                }
            }
        }
    }

    [Fact]
    public void EveryQueryUsesTheDataSourceVariableAndHasAUniqueRefId()
    {
        var datasource = _dashboard.Variable("datasource");
        Assert.Equal("datasource", (string?)datasource["type"]);
        var provisioned = Assert.Single(Yaml.Seq(Yaml.LoadFile(Repo.Path("deploy", "grafana", "provisioning", "datasources", "prometheus.yml")), "datasources"));
        Assert.Equal(Yaml.Scalar(provisioned, "type"), (string?)datasource["query"]);

        foreach (var panel in _dashboard.DataPanels())
        {
            var title = (string)panel["title"]!;
            var targets = panel["targets"]?.AsArray() ?? [];
            Assert.True(targets.Count > 0, $"{title} has no query");
            Assert.Equal(targets.Count, targets.Select(t => (string?)t!["refId"]).Distinct().Count());
            foreach (var source in targets.Select(t => t!["datasource"]).Append(panel["datasource"]))
            {
                Assert.Equal("prometheus", (string?)source?["type"]);
                Assert.Equal("${datasource}", (string?)source?["uid"]);
            }

            if ((string)panel["type"]! == "heatmap")
            {
                // Prometheus buckets are drawn as they are, not re-bucketed by Grafana.
                Assert.All(targets, t => Assert.Equal("heatmap", (string?)t!["format"]));
                Assert.False((bool?)panel["options"]?["calculate"] ?? true);
            }
        }

        var model = _dashboard.Variable("model");
        Assert.Equal("${datasource}", (string?)model["datasource"]?["uid"]);
    }

    [Fact]
    public void TheDashboardShowsWhatOperatorsAskFor()
    {
        var queries = _dashboard.Queries().ToList();
        bool Has(Func<PanelQuery, bool> predicate) => queries.Any(predicate);
        static bool Uses(PanelQuery q, string metric) => PromQl.MetricNames(q.Expr).Contains(metric);

        // Iteration rate: the depth-2 share over time, per model and policy.
        Assert.True(Has(q => q.PanelType == "timeseries" && Uses(q, "tah_tokens_by_depth_total") && q.Expr.Contains("by (model, policy)", StringComparison.Ordinal) && q.Expr.Contains("depth", StringComparison.Ordinal)));
        // Depth distribution.
        Assert.True(Has(q => q.PanelType != "timeseries" && Uses(q, "tah_tokens_by_depth_total") && q.Expr.Contains("depth)", StringComparison.Ordinal)));
        // The decider's continue probability as a heatmap of its buckets.
        Assert.True(Has(q => q.PanelType == "heatmap" && Uses(q, "tah_decider_continue_probability_bucket") && q.Expr.Contains("by (le)", StringComparison.Ordinal)));
        // Tokens per second.
        Assert.True(Has(q => Uses(q, "tah_generation_tokens_total") && q.Expr.Contains("rate(", StringComparison.Ordinal)));
        // Time to first token and inter-token latency percentiles.
        foreach (var histogram in new[] { "tah_time_to_first_token_seconds_bucket", "tah_inter_token_latency_seconds_bucket" })
        {
            var percentiles = queries.Where(q => Uses(q, histogram) && q.Expr.StartsWith("histogram_quantile(", StringComparison.Ordinal)).ToList();
            Assert.True(percentiles.Count >= 2, $"percentiles of {histogram}");
        }

        // Running and waiting requests; KV blocks used per depth.
        Assert.True(Has(q => Uses(q, "tah_requests_running")));
        Assert.True(Has(q => Uses(q, "tah_requests_waiting")));
        Assert.True(Has(q => Uses(q, "tah_kv_blocks_used") && q.Expr.Contains("depth)", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData("sum by (le) (rate(foo_bucket{a=\"b\", depth!=\"1\"}[5m]))", "foo_bucket")]
    [InlineData("histogram_quantile(0.99, sum by (le, model) (rate(x_seconds_bucket{model=~\"(tah)\"}[1m])))", "x_seconds_bucket")]
    [InlineData("(sum by (model, policy) (rate(a_total[1m])) or 0 * sum by (model, policy) (rate(b_total[1m]))) / on (model) group_left c", "a_total b_total c")]
    [InlineData("up == bool 1 and ignoring (job) node_time_seconds offset 5m > 1e-9", "up node_time_seconds")]
    public void MetricNamesAreReadFromPromQl(string expr, string expected)
    {
        Assert.Equal(expected.Split(' ').Order(StringComparer.Ordinal), PromQl.MetricNames(expr).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void GrafanaMacrosAndVariablesAreAllReplaced()
    {
        var macros = new Dictionary<string, string> { ["__rate_interval"] = "1m", ["__range"] = "10m" };
        var variables = new Dictionary<string, string> { ["model"] = PromQl.RegexAlternation(["TaH-plus-1.7B"]) };
        // Regex metacharacters escaped, the backslash doubled inside the PromQL string (as Grafana does).
        Assert.Equal("""rate(a{model=~"(TaH-plus-1\\.7B)"}[1m]) + increase(b[10m])""",
            PromQl.Substitute("rate(a{model=~\"$model\"}[$__rate_interval]) + increase(b[${__range}])", macros, variables));
        Assert.Throws<InvalidOperationException>(() => PromQl.Substitute("rate(a[$__unknown])", macros, variables));
        Assert.Throws<InvalidOperationException>(() => PromQl.Substitute("a{x=\"$other\"}", macros, variables));
    }
}
