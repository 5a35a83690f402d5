using YamlDotNet.RepresentationModel;

namespace TaH.Deploy.Tests;

/// <summary>One Kubernetes object of deploy/k8s: the file, its text and its tree.</summary>
internal sealed record Manifest(string File, string Text, YamlMappingNode Root)
{
    public string ApiVersion => Yaml.Scalar(Root, "apiVersion") ?? "";

    public string Kind => Yaml.Scalar(Root, "kind") ?? "";

    public string Name => Yaml.Scalar(Root, "metadata", "name") ?? "";

    public override string ToString() => $"{File}: {Kind} {Name}";
}

/// <summary>The Kubernetes manifests: every YAML file of deploy/k8s but the kustomization and the adapter's Helm values.</summary>
internal static class Manifests
{
    public static string Directory => Repo.Path("deploy", "k8s");

    public static readonly string[] NotManifests = ["kustomization.yaml", "prometheus-adapter-values.yaml"];

    public static IEnumerable<string> Files() =>
        System.IO.Directory.EnumerateFiles(Directory).Where(f => f.EndsWith(".yaml", StringComparison.Ordinal) || f.EndsWith(".yml", StringComparison.Ordinal))
            .Select(Path.GetFileName).Where(f => !NotManifests.Contains(f)).Order(StringComparer.Ordinal)!;

    public static List<Manifest> Load()
    {
        var manifests = new List<Manifest>();
        foreach (var file in Files())
        {
            var text = File.ReadAllText(Path.Combine(Directory, file));
            foreach (var doc in text.Split("\n---", StringSplitOptions.RemoveEmptyEntries))
            {
                if (Yaml.All(doc) is [YamlMappingNode root])
                {
                    manifests.Add(new Manifest(file, doc, root));
                }
            }
        }

        return manifests;
    }
}
