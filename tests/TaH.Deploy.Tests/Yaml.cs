using YamlDotNet.RepresentationModel;

namespace TaH.Deploy.Tests;

/// <summary>YAML read with YamlDotNet's representation model (documents as node trees).</summary>
internal static class Yaml
{
    public static YamlMappingNode LoadFile(string path) => (YamlMappingNode)Single(File.ReadAllText(path));

    public static YamlNode Single(string text) => Assert.Single(All(text));

    public static List<YamlNode> All(string text)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(text));
        return stream.Documents.Select(d => d.RootNode).ToList();
    }

    public static string? Scalar(YamlNode node, params string[] path)
    {
        var current = node;
        foreach (var key in path)
        {
            if (current is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(key), out var next))
            {
                return null;
            }

            current = next;
        }

        return (current as YamlScalarNode)?.Value;
    }

    public static YamlMappingNode? Map(YamlNode node, params string[] path) => Walk(node, path) as YamlMappingNode;

    public static IEnumerable<YamlNode> Seq(YamlNode node, params string[] path) => (Walk(node, path) as YamlSequenceNode)?.Children ?? [];

    public static Dictionary<string, string> StringMap(YamlNode node, params string[] path) =>
        Map(node, path)?.Children.ToDictionary(kv => ((YamlScalarNode)kv.Key).Value!, kv => (kv.Value as YamlScalarNode)?.Value ?? "") ?? [];

    public static YamlNode? Walk(YamlNode node, params string[] path)
    {
        var current = node;
        foreach (var key in path)
        {
            if (current is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(key), out var next))
            {
                return null;
            }

            current = next;
        }

        return current;
    }

    /// <summary>Every key path of a tree ("spec.template.spec.containers[].name"), list items as [].</summary>
    public static HashSet<string> KeyPaths(YamlNode node)
    {
        var paths = new HashSet<string>();
        void Visit(YamlNode n, string prefix)
        {
            switch (n)
            {
                case YamlMappingNode map:
                    foreach (var (key, value) in map.Children)
                    {
                        var path = prefix.Length == 0 ? ((YamlScalarNode)key).Value! : prefix + "." + ((YamlScalarNode)key).Value;
                        paths.Add(path);
                        Visit(value, path);
                    }

                    break;
                case YamlSequenceNode seq:
                    foreach (var item in seq.Children)
                    {
                        Visit(item, prefix + "[]");
                    }

                    break;
            }
        }

        Visit(node, "");
        return paths;
    }
}
