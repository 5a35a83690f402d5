using System.Globalization;
using YamlDotNet.RepresentationModel;

namespace TaH.Deploy.Tests;

/// <summary>
/// docker-compose.yml, validated and resolved by Debian's docker-compose (no engine needed for
/// `config`), and the Prometheus and Grafana files it mounts, which must point at each other.
/// </summary>
public sealed class ComposeTests : IDisposable
{
    private readonly string _modelDir = Directory.CreateTempSubdirectory("tah-compose-model-").FullName;

    public static string ComposeBinary => Tool.Require("docker-compose", "docker-compose");

    [Fact]
    public async Task TheComposeFileValidatesAndAsksForTheModelDirectory()
    {
        var services = await ResolveAsync("docker-compose.yml");
        Assert.Equal(["grafana", "prometheus", "tah"], services.Children.Keys.Select(k => ((YamlScalarNode)k).Value!).Order(StringComparer.Ordinal));

        var missing = await Tool.RunAsync(ComposeBinary, ["-f", "docker-compose.yml", "config"], new Dictionary<string, string?> { ["TAH_MODEL_DIR"] = null });
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("TAH_MODEL_DIR", missing.All, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheCudaOverrideBuildsTheCudaImageOnAGpu()
    {
        var tah = (YamlMappingNode)(await ResolveAsync("docker-compose.yml", "docker-compose.cuda.yml"))["tah"];
        var context = Yaml.Scalar(tah, "build", "context")!;
        Assert.Equal(Path.GetFullPath(Repo.Path("Dockerfile.cuda")), Path.GetFullPath(Path.Combine(context, Yaml.Scalar(tah, "build", "dockerfile")!)));
        var device = Assert.Single(Yaml.Seq(tah, "deploy", "resources", "reservations", "devices"));
        Assert.Equal("nvidia", Yaml.Scalar(device, "driver"));
        Assert.Contains("gpu", Yaml.Seq(device, "capabilities").Select(c => ((YamlScalarNode)c).Value));

        // Everything else (the model volume, the port) comes from docker-compose.yml unchanged.
        Assert.Contains(Yaml.Seq(tah, "volumes"), v => ((YamlScalarNode)v).Value!.StartsWith(_modelDir + ":", StringComparison.Ordinal));
    }

    [Fact]
    public async Task EveryFileTheStackBuildsOrMountsExists()
    {
        foreach (var files in new[] { new[] { "docker-compose.yml" }, ["docker-compose.yml", "docker-compose.cuda.yml"] })
        {
            var config = Yaml.Single((await ConfigAsync(files)).Output);
            var named = Yaml.Map(config, "volumes")?.Children.Keys.Select(k => ((YamlScalarNode)k).Value!).ToHashSet() ?? [];
            foreach (var (name, service) in ((YamlMappingNode)config["services"]).Children)
            {
                if (Yaml.Scalar(service, "build", "context") is { } context)
                {
                    Assert.True(Directory.Exists(context), $"{name}: build context {context} is missing");
                    var dockerfile = Path.Combine(context, Yaml.Scalar(service, "build", "dockerfile") ?? "Dockerfile");
                    Assert.True(File.Exists(dockerfile), $"{name}: {dockerfile} is missing");
                }

                foreach (var volume in Yaml.Seq(service, "volumes").Select(v => Mount.Parse(((YamlScalarNode)v).Value!)))
                {
                    if (volume.IsBind)
                    {
                        Assert.True(File.Exists(volume.Source) || Directory.Exists(volume.Source), $"{name}: mounts {volume.Source}, which does not exist");
                    }
                    else
                    {
                        Assert.Contains(volume.Source, named);
                    }
                }
            }
        }
    }

    [Fact]
    public async Task PrometheusScrapesTheServerAndGrafanaReadsPrometheus()
    {
        var services = await ResolveAsync("docker-compose.yml");
        var tah = services["tah"];
        var prometheus = services["prometheus"];
        var grafana = services["grafana"];

        // Prometheus reads deploy/prometheus.yml where its --config.file says.
        var promConfig = Mounts(prometheus).Single(m => m.Source == Repo.Path("deploy", "prometheus.yml"));
        Assert.Contains($"--config.file={promConfig.Target}", Yaml.Seq(prometheus, "command").Select(c => ((YamlScalarNode)c).Value));
        Assert.True(promConfig.ReadOnly);

        // ...whose one target is the tah service on the image's port, labelled with the model's served name.
        var prom = Yaml.LoadFile(Repo.Path("deploy", "prometheus.yml"));
        var job = (YamlMappingNode)Assert.Single(Yaml.Seq(prom, "scrape_configs"));
        var targets = (YamlMappingNode)Assert.Single(Yaml.Seq(job, "static_configs"));
        var target = ((YamlScalarNode)Assert.Single(Yaml.Seq(targets, "targets"))).Value!;
        var port = Dockerfile.Load(Repo.Path("Dockerfile")).Final.Environment()[ImageProcess.PortVariable];
        Assert.Equal($"tah:{port}", target);
        var model = Mounts(tah).Single(m => m.Target.StartsWith("/models/", StringComparison.Ordinal));
        Assert.True(model.ReadOnly, "the model is mounted read-only");
        Assert.Equal(Path.GetFileName(model.Target), Yaml.Scalar(targets, "labels", "model")); // the served name is the directory's name
        Assert.Contains(Yaml.Seq(tah, "ports"), p => ((YamlScalarNode)p).Value!.EndsWith($":{port}/tcp", StringComparison.Ordinal));

        // Grafana: provisioning where Grafana reads it, the data source at the prometheus service,
        // the dashboards where the provider looks, the home dashboard a file that exists.
        var grafanaMounts = Mounts(grafana).ToList();
        var provisioning = grafanaMounts.Single(m => m.Target == "/etc/grafana/provisioning");
        Assert.Equal(Repo.Path("deploy", "grafana", "provisioning"), provisioning.Source);
        var datasource = Assert.Single(Yaml.Seq(Yaml.LoadFile(Path.Combine(provisioning.Source, "datasources", "prometheus.yml")), "datasources"));
        var url = new Uri(Yaml.Scalar(datasource, "url")!);
        Assert.Equal("prometheus", url.Host);
        Assert.Equal(9090, url.Port); // Prometheus' default listen address; the compose command sets no other
        Assert.DoesNotContain(Yaml.Seq(prometheus, "command"), c => ((YamlScalarNode)c).Value!.StartsWith("--web.listen-address", StringComparison.Ordinal));
        Assert.Equal("prometheus", Yaml.Scalar(datasource, "type"));
        Assert.Equal(Yaml.Scalar(prom, "global", "scrape_interval"), Yaml.Scalar(datasource, "jsonData", "timeInterval"));

        var provider = Assert.Single(Yaml.Seq(Yaml.LoadFile(Path.Combine(provisioning.Source, "dashboards", "tah.yml")), "providers"));
        var dashboards = grafanaMounts.Single(m => m.Target == Yaml.Scalar(provider, "options", "path"));
        Assert.True(File.Exists(Path.Combine(dashboards.Source, "tah.json")));
        Assert.Equal(Dashboard.FilePath, Path.Combine(dashboards.Source, "tah.json"));
        var home = Yaml.Scalar(grafana, "environment", "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")!;
        Assert.StartsWith(dashboards.Target + "/", home, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(dashboards.Source, home[(dashboards.Target.Length + 1)..])));

        // The dashboard's data source variable offers this data source's type.
        Assert.Equal(Yaml.Scalar(datasource, "type"), (string?)Dashboard.Load().Variable("datasource")["query"]);
    }

    [Fact]
    public async Task PromtoolAcceptsTheConfigurationAndTheTestsRewriteOfIt()
    {
        var promtool = Tool.Require("promtool", "prometheus");
        var shipped = await Tool.RunAsync(promtool, ["check", "config", Repo.Path("deploy", "prometheus.yml")]);
        Assert.True(shipped.ExitCode == 0, shipped.All);

        var rewritten = Path.Combine(_modelDir, "prometheus.yml");
        await File.WriteAllTextAsync(rewritten, PrometheusServer.RewriteConfig("127.0.0.1:" + 8000.ToString(CultureInfo.InvariantCulture)));
        var test = await Tool.RunAsync(promtool, ["check", "config", rewritten]);
        Assert.True(test.ExitCode == 0, test.All);
    }

    private static IEnumerable<Mount> Mounts(YamlNode service) => Yaml.Seq(service, "volumes").Select(v => Mount.Parse(((YamlScalarNode)v).Value!));

    private async Task<YamlMappingNode> ResolveAsync(params string[] files)
    {
        var result = await ConfigAsync(files);
        return (YamlMappingNode)Yaml.Single(result.Output)["services"];
    }

    private async Task<CommandResult> ConfigAsync(string[] files)
    {
        var result = await Tool.RunAsync(ComposeBinary, [.. files.SelectMany(f => new[] { "-f", f }), "config"],
            new Dictionary<string, string?> { ["TAH_MODEL_DIR"] = _modelDir, ["GRAFANA_ADMIN_PASSWORD"] = null });
        Assert.True(result.ExitCode == 0, $"docker-compose config failed: {result.All}");
        return result;
    }

    public void Dispose() => Directory.Delete(_modelDir, recursive: true);

    /// <summary>A volume as `docker-compose config` writes it: SOURCE:TARGET[:MODE].</summary>
    private sealed record Mount(string Source, string Target, bool ReadOnly)
    {
        public bool IsBind => Source.StartsWith('/');

        public static Mount Parse(string text)
        {
            var parts = text.Split(':');
            return new Mount(parts[0], parts[1], parts.Length > 2 && parts[2].Split(',').Contains("ro"));
        }
    }
}
