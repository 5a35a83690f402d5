using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using k8s;
using YamlDotNet.RepresentationModel;

namespace TaH.Deploy.Tests;

/// <summary>
/// deploy/k8s: every manifest parses into the official Kubernetes client's types with no field
/// left over, carries what the API server requires, and its parts refer to each other, to the
/// image and to the server correctly.
/// </summary>
public sealed partial class KubernetesTests
{
    private readonly List<Manifest> _manifests = Manifests.Load();

    private Manifest One(string kind) => Assert.Single(_manifests, m => m.Kind == kind);

    [Fact]
    public void TheKustomizationListsEveryManifestAndTheImage()
    {
        var kustomization = Yaml.LoadFile(Path.Combine(Manifests.Directory, "kustomization.yaml"));
        var resources = Yaml.Seq(kustomization, "resources").Select(n => ((YamlScalarNode)n).Value!).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(Manifests.Files().ToList(), resources);
        Assert.Equal(One("Namespace").Name, Yaml.Scalar(kustomization, "namespace"));

        var image = Yaml.Scalar(Container(), "image");
        Assert.Contains(Yaml.Seq(kustomization, "images"), i => Yaml.Scalar(i, "name") == image);
    }

    [Fact]
    public void EveryManifestHasTheFieldsTheApiServerRequires()
    {
        Assert.Equal(["Deployment", "HorizontalPodAutoscaler", "Namespace", "PersistentVolumeClaim", "PodDisruptionBudget", "Service", "ServiceMonitor"],
            _manifests.Select(m => m.Kind).Order(StringComparer.Ordinal));
        var problems = new List<string>();
        foreach (var m in _manifests)
        {
            // Every object: apiVersion, kind, metadata.name (a DNS-1123 subdomain), valid labels.
            foreach (var path in new[] { "apiVersion", "kind", "metadata.name" })
            {
                Require(m, path, problems);
            }

            if (!Dns1123().IsMatch(m.Name) || m.Name.Length > 253)
            {
                problems.Add($"{m}: metadata.name is not a DNS-1123 name");
            }

            foreach (var labels in new[] { Yaml.StringMap(m.Root, "metadata", "labels"), Yaml.StringMap(m.Root, "spec", "template", "metadata", "labels") })
            {
                problems.AddRange(labels.Where(l => !LabelValue().IsMatch(l.Value) || l.Value.Length > 63).Select(l => $"{m}: label {l.Key}={l.Value} is not a valid label value"));
            }

            // What the API reference marks required, kind by kind.
            string[] required = m.Kind switch
            {
                "Deployment" => ["spec.selector", "spec.template", "spec.template.spec.containers", "spec.template.spec.containers[].name", "spec.template.spec.containers[].image"],
                "Service" => ["spec.ports", "spec.ports[].port"],
                "HorizontalPodAutoscaler" => ["spec.scaleTargetRef.kind", "spec.scaleTargetRef.name", "spec.maxReplicas", "spec.metrics[].type", "spec.metrics[].pods.metric.name", "spec.metrics[].pods.target.type"],
                "PersistentVolumeClaim" => ["spec.accessModes", "spec.resources.requests.storage"],
                "PodDisruptionBudget" => ["spec.selector"],
                "ServiceMonitor" => ["spec.selector", "spec.endpoints"],
                _ => [],
            };
            foreach (var path in required)
            {
                Require(m, path, problems);
            }
        }

        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    [Fact]
    public void EveryCoreManifestParsesIntoTheKubernetesClientTypesWithNoUnknownField()
    {
        foreach (var m in _manifests.Where(m => m.ApiVersion != "monitoring.coreos.com/v1"))
        {
            // The official client's models are generated from the API's OpenAPI document; a field
            // they do not have (a typo, a field at the wrong level) is dropped on the way through.
            var typed = Assert.Single(KubernetesYaml.LoadAllFromString(m.Text));
            Assert.EndsWith(m.Kind, typed.GetType().Name, StringComparison.Ordinal);
            var roundTrip = JsonKeyPaths(JsonNode.Parse(KubernetesJson.Serialize(typed))!);
            var unknown = Yaml.KeyPaths(m.Root).Except(roundTrip).Order(StringComparer.Ordinal).ToList();
            Assert.True(unknown.Count == 0, $"{m}: fields the Kubernetes API does not have: {string.Join(", ", unknown)}");
        }
    }

    [Fact]
    public void TheServiceMonitorUsesOnlyFieldsOfItsCustomResource()
    {
        var monitor = One("ServiceMonitor");
        Assert.Equal("monitoring.coreos.com/v1", monitor.ApiVersion);

        // The fields this manifest may use, from the Prometheus Operator's ServiceMonitor CRD.
        HashSet<string> spec = ["selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels", "sampleLimit", "targetLimit", "attachMetadata"];
        HashSet<string> endpoint = ["port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout", "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings", "tlsConfig", "bearerTokenSecret", "authorization", "basicAuth", "oauth2", "followRedirects", "enableHttp2", "filterRunning", "proxyUrl"];
        HashSet<string> relabel = ["sourceLabels", "separator", "targetLabel", "regex", "modulus", "replacement", "action"];
        Assert.Empty(Yaml.Map(monitor.Root, "spec")!.Children.Keys.Select(k => ((YamlScalarNode)k).Value!).Except(spec));
        foreach (var e in Yaml.Seq(monitor.Root, "spec", "endpoints"))
        {
            Assert.Empty(((YamlMappingNode)e).Children.Keys.Select(k => ((YamlScalarNode)k).Value!).Except(endpoint));
            foreach (var r in Yaml.Seq(e, "relabelings"))
            {
                Assert.Empty(((YamlMappingNode)r).Children.Keys.Select(k => ((YamlScalarNode)k).Value!).Except(relabel));
            }
        }
    }

    [Fact]
    public void SelectorsPortsAndVolumesReferToEachOther()
    {
        var deployment = One("Deployment");
        var podLabels = Yaml.StringMap(deployment.Root, "spec", "template", "metadata", "labels");
        Assert.NotEmpty(podLabels);
        Assert.True(IsSubset(Yaml.StringMap(deployment.Root, "spec", "selector", "matchLabels"), podLabels), "the Deployment's selector does not match its pods");
        Assert.True(IsSubset(Yaml.StringMap(One("PodDisruptionBudget").Root, "spec", "selector", "matchLabels"), podLabels), "the PodDisruptionBudget selects no pod");

        var service = One("Service");
        Assert.True(IsSubset(Yaml.StringMap(service.Root, "spec", "selector"), podLabels), "the Service selects no pod");
        var container = Container();
        var containerPorts = Yaml.Seq(container, "ports").ToDictionary(p => Yaml.Scalar(p, "name")!, p => Yaml.Scalar(p, "containerPort")!);
        var servicePorts = Yaml.Seq(service.Root, "spec", "ports").Select(p => (Name: Yaml.Scalar(p, "name")!, Target: Yaml.Scalar(p, "targetPort")!)).ToList();
        Assert.All(servicePorts, p => Assert.True(containerPorts.ContainsKey(p.Target) || containerPorts.ContainsValue(p.Target), $"Service port {p.Name} targets {p.Target}, which the container does not have"));

        // The server listens on the image's port.
        var image = Dockerfile.Load(Repo.Path("Dockerfile")).Final.Environment();
        var env = Yaml.Seq(container, "env").Where(e => Yaml.Scalar(e, "value") is not null).ToDictionary(e => Yaml.Scalar(e, "name")!, e => Yaml.Scalar(e, "value")!);
        var port = env.GetValueOrDefault(ImageProcess.PortVariable) ?? image[ImageProcess.PortVariable];
        Assert.Contains(port, containerPorts.Values);

        foreach (var probe in new[] { "startupProbe", "livenessProbe", "readinessProbe" })
        {
            if (Yaml.Scalar(container, probe, "httpGet", "port") is { } probePort)
            {
                Assert.True(containerPorts.ContainsKey(probePort) || containerPorts.ContainsValue(probePort), $"{probe} uses port {probePort}");
            }
        }

        // The model: --model names a read-only mount of the PVC, which the manifests create.
        var args = Yaml.Seq(container, "args").Select(a => ((YamlScalarNode)a).Value!).ToList();
        var model = args[args.IndexOf("--model") + 1];
        var mount = Assert.Single(Yaml.Seq(container, "volumeMounts"), v => Yaml.Scalar(v, "mountPath") == model);
        Assert.Equal("true", Yaml.Scalar(mount, "readOnly"));
        var volume = Assert.Single(Yaml.Seq(deployment.Root, "spec", "template", "spec", "volumes"), v => Yaml.Scalar(v, "name") == Yaml.Scalar(mount, "name"));
        var claim = Yaml.Scalar(volume, "persistentVolumeClaim", "claimName");
        var pvc = One("PersistentVolumeClaim");
        Assert.Equal(pvc.Name, claim);
        Assert.Contains("ReadOnlyMany", Yaml.Seq(pvc.Root, "spec", "accessModes").Select(a => ((YamlScalarNode)a).Value)); // replicas on several nodes share it

        // The image declares the model volume the mount lands in.
        var volumes = Dockerfile.Load(Repo.Path("Dockerfile")).Final.All("VOLUME").SelectMany(v => System.Text.Json.JsonSerializer.Deserialize<string[]>(v.Arguments)!);
        Assert.Contains(volumes, v => model.StartsWith(v.TrimEnd('/') + "/", StringComparison.Ordinal));

        // Running as the image's non-root user.
        var user = Dockerfile.Load(Repo.Path("Dockerfile.cuda")).Final.Last("USER")!.Arguments.Split(':')[0];
        Assert.Equal(user, Yaml.Scalar(deployment.Root, "spec", "template", "spec", "securityContext", "runAsUser"));
        Assert.Equal("true", Yaml.Scalar(deployment.Root, "spec", "template", "spec", "securityContext", "runAsNonRoot"));
    }

    [Fact]
    public void EachReplicaAsksForOneGpuAndDrainsWithinItsGracePeriod()
    {
        var container = Container();
        var limits = Yaml.StringMap(container, "resources", "limits");
        var requests = Yaml.StringMap(container, "resources", "requests");
        Assert.True(limits.TryGetValue("nvidia.com/gpu", out var gpus), "no nvidia.com/gpu limit: extended resources are asked for in limits");
        Assert.Equal(1, int.Parse(gpus, CultureInfo.InvariantCulture));
        if (requests.TryGetValue("nvidia.com/gpu", out var requested))
        {
            Assert.Equal(gpus, requested); // the API server refuses a request that differs from the limit
        }

        foreach (var (name, value) in limits.Concat(requests))
        {
            _ = new k8s.Models.ResourceQuantity(value); // throws on a malformed quantity
        }

        Assert.True(requests.ContainsKey("memory") && limits.ContainsKey("memory"), "memory for weights + KV pool must be requested and limited");

        var args = Yaml.Seq(container, "args").Select(a => ((YamlScalarNode)a).Value!).ToList();
        double grace = args.Contains("--shutdown-grace") ? double.Parse(args[args.IndexOf("--shutdown-grace") + 1], CultureInfo.InvariantCulture) : 30;
        var terminationGrace = double.Parse(Yaml.Scalar(One("Deployment").Root, "spec", "template", "spec", "terminationGracePeriodSeconds") ?? "30", CultureInfo.InvariantCulture);
        var preStop = double.Parse(Yaml.Scalar(container, "lifecycle", "preStop", "sleep", "seconds") ?? "0", CultureInfo.InvariantCulture);
        Assert.True(terminationGrace > grace + preStop, $"terminationGracePeriodSeconds {terminationGrace} leaves no time for the drain ({preStop} s preStop + {grace} s --shutdown-grace)");
    }

    [Fact]
    public async Task TheContainerArgumentsAreFlagsTheServerHas()
    {
        var help = await Tool.RunAsync("dotnet", [Path.Combine(ImageProcess.AppDirectory, "tah.dll"), "serve", "--help"]);
        Assert.Equal(0, help.ExitCode);
        var args = Yaml.Seq(Container(), "args").Select(a => ((YamlScalarNode)a).Value!).ToList();
        Assert.Equal("serve", args[0]);
        foreach (var flag in args.Where(a => a.StartsWith("--", StringComparison.Ordinal)))
        {
            Assert.Matches(new Regex($@"(^|\s){Regex.Escape(flag)}(\s|,|$)", RegexOptions.Multiline), help.Output);
        }

        // The served name is the model label the ServiceMonitor copies onto the series.
        var served = args[args.IndexOf("--served-model-name") + 1];
        Assert.Equal(served, Yaml.StringMap(One("Deployment").Root, "spec", "template", "metadata", "labels")["model"]);
    }

    [Fact]
    public void TheAutoscalerScalesTheDeploymentOnMetricsTheAdapterServes()
    {
        var hpa = One("HorizontalPodAutoscaler");
        Assert.Equal("autoscaling/v2", hpa.ApiVersion);
        var deployment = One("Deployment");
        Assert.Equal(deployment.Kind, Yaml.Scalar(hpa.Root, "spec", "scaleTargetRef", "kind"));
        Assert.Equal(deployment.Name, Yaml.Scalar(hpa.Root, "spec", "scaleTargetRef", "name"));
        Assert.Equal(deployment.ApiVersion, Yaml.Scalar(hpa.Root, "spec", "scaleTargetRef", "apiVersion"));
        int min = int.Parse(Yaml.Scalar(hpa.Root, "spec", "minReplicas") ?? "1", CultureInfo.InvariantCulture);
        int max = int.Parse(Yaml.Scalar(hpa.Root, "spec", "maxReplicas")!, CultureInfo.InvariantCulture);
        Assert.InRange(min, 1, max);

        var adapter = Yaml.LoadFile(Path.Combine(Manifests.Directory, "prometheus-adapter-values.yaml"));
        var served = Yaml.Seq(adapter, "rules", "custom").Select(r => Yaml.Scalar(r, "name", "as")).ToHashSet();
        var metrics = Yaml.Seq(hpa.Root, "spec", "metrics").ToList();
        Assert.NotEmpty(metrics);
        foreach (var metric in metrics)
        {
            Assert.Equal("Pods", Yaml.Scalar(metric, "type"));
            Assert.Contains(Yaml.Scalar(metric, "pods", "metric", "name"), served);
            _ = new k8s.Models.ResourceQuantity(Yaml.Scalar(metric, "pods", "target", "averageValue"));
        }

        // The adapter maps the namespace and pod labels that the Prometheus Operator puts on each series.
        foreach (var rule in Yaml.Seq(adapter, "rules", "custom"))
        {
            Assert.Equal("pod", Yaml.Scalar(rule, "resources", "overrides", "pod", "resource"));
            Assert.Equal("namespace", Yaml.Scalar(rule, "resources", "overrides", "namespace", "resource"));
        }
    }

    [Fact]
    public void TheServiceMonitorScrapesTheServiceAndLabelsSeriesByModel()
    {
        var monitor = One("ServiceMonitor");
        var service = One("Service");
        Assert.True(IsSubset(Yaml.StringMap(monitor.Root, "spec", "selector", "matchLabels"), Yaml.StringMap(service.Root, "metadata", "labels")), "the ServiceMonitor selects no Service");
        var portNames = Yaml.Seq(service.Root, "spec", "ports").Select(p => Yaml.Scalar(p, "name")).ToHashSet();
        var podLabels = Yaml.StringMap(One("Deployment").Root, "spec", "template", "metadata", "labels");
        var (_, variableLabel) = StackFixture.LabelValuesQuery(Dashboard.Load().Variable("model"));
        foreach (var endpoint in Yaml.Seq(monitor.Root, "spec", "endpoints"))
        {
            Assert.Contains(Yaml.Scalar(endpoint, "port"), portNames);
            var relabel = Assert.Single(Yaml.Seq(endpoint, "relabelings"), r => Yaml.Scalar(r, "targetLabel") == variableLabel);
            var source = ((YamlScalarNode)Assert.Single(Yaml.Seq(relabel, "sourceLabels"))).Value!;
            Assert.StartsWith("__meta_kubernetes_pod_label_", source, StringComparison.Ordinal);
            Assert.Contains(source["__meta_kubernetes_pod_label_".Length..], podLabels.Keys);
        }
    }

    private YamlMappingNode Container() =>
        (YamlMappingNode)Assert.Single(Yaml.Seq(One("Deployment").Root, "spec", "template", "spec", "containers"));

    private static bool IsSubset(Dictionary<string, string> selector, Dictionary<string, string> labels) =>
        selector.Count > 0 && selector.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value);

    private static void Require(Manifest m, string path, List<string> problems)
    {
        if (!Present(m.Root, path.Split('.')))
        {
            problems.Add($"{m}: {path} is required");
        }
    }

    /// <summary>Whether the path is set (a "[]" segment: in every item of a non-empty list).</summary>
    private static bool Present(YamlNode node, ReadOnlySpan<string> path)
    {
        if (path.IsEmpty)
        {
            return node is not YamlScalarNode { Value: null or "" };
        }

        var key = path[0];
        bool each = key.EndsWith("[]", StringComparison.Ordinal);
        key = each ? key[..^2] : key;
        if (node is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(key), out var child))
        {
            return false;
        }

        if (!each)
        {
            return Present(child, path[1..]);
        }

        if (child is not YamlSequenceNode { Children.Count: > 0 } seq)
        {
            return false;
        }

        foreach (var item in seq.Children)
        {
            if (!Present(item, path[1..]))
            {
                return false;
            }
        }

        return true;
    }

    private static HashSet<string> JsonKeyPaths(JsonNode node)
    {
        var paths = new HashSet<string>();
        void Visit(JsonNode? n, string prefix)
        {
            switch (n)
            {
                case JsonObject obj:
                    foreach (var (key, value) in obj)
                    {
                        var path = prefix.Length == 0 ? key : prefix + "." + key;
                        paths.Add(path);
                        Visit(value, path);
                    }

                    break;
                case JsonArray array:
                    foreach (var item in array)
                    {
                        Visit(item, prefix + "[]");
                    }

                    break;
            }
        }

        Visit(node, "");
        return paths;
    }

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]
    private static partial Regex Dns1123();

    [GeneratedRegex(@"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")]
    private static partial Regex LabelValue();
}
