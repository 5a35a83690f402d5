using System.Text.Json.Nodes;
using TaH.Engine.Tokenization;

namespace TaH.Engine.Tests.Tokenization;

/// <summary>The Qwen3 tokenizer and golden files under tests/fixtures, loaded once for all tests.</summary>
internal static class TokenizerFixtures
{
    private static readonly Lazy<TextTokenizer> Qwen3Lazy = new(() => TextTokenizer.Load(Qwen3Dir));

    public static string Qwen3Dir => Fixtures.Directory("qwen3-tokenizer");

    public static string GoldenPath => Path.Combine(Qwen3Dir, "golden.json");

    public static string ExtraGoldenPath => Path.Combine(Fixtures.Directory("tokenizer-extra"), "golden-extra.json");

    public static TextTokenizer Qwen3 => Qwen3Lazy.Value;

    public static JsonObject ReadJson(string path) => JsonNode.Parse(File.ReadAllText(path))!.AsObject();

    public static IEnumerable<JsonObject> Section(string path, string name) =>
        ReadJson(path)[name]!.AsArray().Select(n => n!.AsObject());

    public static List<int> Ids(JsonNode? node) => node!.AsArray().Select(n => n!.GetValue<int>()).ToList();
}
