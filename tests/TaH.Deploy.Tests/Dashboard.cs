using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace TaH.Deploy.Tests;

/// <summary>One query of a panel.</summary>
internal sealed record PanelQuery(string Panel, string PanelType, string RefId, string Expr, JsonNode Target);

/// <summary>The TaH Grafana dashboard (deploy/grafana/dashboards/tah.json), read as Grafana stores it.</summary>
internal sealed class Dashboard
{
    private Dashboard(JsonObject json) => Json = json;

    public static string FilePath => Repo.Path("deploy", "grafana", "dashboards", "tah.json");

    public JsonObject Json { get; }

    public static Dashboard Load() => new(JsonNode.Parse(File.ReadAllText(FilePath))!.AsObject());

    /// <summary>Every panel, those inside rows included (a collapsed row keeps its panels under "panels").</summary>
    public IEnumerable<JsonObject> Panels()
    {
        foreach (var panel in Json["panels"]!.AsArray().Select(p => p!.AsObject()))
        {
            yield return panel;
            foreach (var inner in panel["panels"]?.AsArray().Select(p => p!.AsObject()) ?? [])
            {
                yield return inner;
            }
        }
    }

    /// <summary>The panels that draw data (rows only group them).</summary>
    public IEnumerable<JsonObject> DataPanels() => Panels().Where(p => (string?)p["type"] != "row");

    public IEnumerable<PanelQuery> Queries() =>
        DataPanels().SelectMany(p => (p["targets"]?.AsArray() ?? []).Select(t => new PanelQuery(
            (string)p["title"]!, (string)p["type"]!, (string?)t!["refId"] ?? "", (string?)t["expr"] ?? "", t)));

    public JsonObject Variable(string name) =>
        Json["templating"]!["list"]!.AsArray().Select(v => v!.AsObject()).Single(v => (string?)v["name"] == name);

    public IEnumerable<JsonObject> Variables() => Json["templating"]!["list"]!.AsArray().Select(v => v!.AsObject());
}

/// <summary>Just enough PromQL: Grafana's macros and variables replaced, and the metric names an expression reads.</summary>
internal static partial class PromQl
{
    private static readonly HashSet<string> Keywords =
    [
        "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless", "atan2", "inf", "nan",
    ];

    /// <summary>
    /// The expression Grafana would send: $__rate_interval, $__interval and $__range as concrete
    /// durations, $name / ${name} from <paramref name="variables"/>. A macro or variable this does not
    /// know is an error, not left in place.
    /// </summary>
    public static string Substitute(string expr, IReadOnlyDictionary<string, string> macros, IReadOnlyDictionary<string, string> variables)
    {
        return VariableReference().Replace(expr, m =>
        {
            var name = m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value;
            if (name.StartsWith("__", StringComparison.Ordinal))
            {
                return macros.TryGetValue(name, out var macro) ? macro : throw new InvalidOperationException($"no value for the Grafana macro ${name} in: {expr}");
            }

            return variables.TryGetValue(name, out var value) ? value : throw new InvalidOperationException($"no value for the dashboard variable ${name} in: {expr}");
        });
    }

    /// <summary>The metric names an expression selects (not functions, keywords, labels or durations).</summary>
    public static HashSet<string> MetricNames(string expr)
    {
        var text = StringLiteral().Replace(expr, "\"\"");
        text = Braces().Replace(text, " ");
        text = Brackets().Replace(text, " ");
        text = Grouping().Replace(text, " ");
        var names = new HashSet<string>();
        foreach (Match m in Identifier().Matches(text))
        {
            if (!Keywords.Contains(m.Value.ToLowerInvariant()))
            {
                names.Add(m.Value);
            }
        }

        return names;
    }

    /// <summary>
    /// A value for a regex matcher (=~) that matches exactly these values, as Grafana writes a
    /// multi-value variable: metacharacters escaped, the backslash doubled for the PromQL string.
    /// </summary>
    public static string RegexAlternation(IEnumerable<string> values) =>
        "(" + string.Join('|', values.Select(v => RegexMeta().Replace(v, @"\\$0"))) + ")";

    [GeneratedRegex(@"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")]
    private static partial Regex VariableReference();

    [GeneratedRegex(@"""(?:[^""\\]|\\.)*""|'(?:[^'\\]|\\.)*'|`[^`]*`")]
    private static partial Regex StringLiteral();

    [GeneratedRegex(@"\{[^{}]*\}")]
    private static partial Regex Braces();

    [GeneratedRegex(@"\[[^\[\]]*\]")]
    private static partial Regex Brackets();

    [GeneratedRegex(@"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", RegexOptions.IgnoreCase)]
    private static partial Regex Grouping();

    // An identifier not glued to a number (1e-9) and not a function call.
    [GeneratedRegex(@"(?<![\w.:])[A-Za-z_:][\w:]*(?!\s*\(|[\w:])")]
    private static partial Regex Identifier();

    [GeneratedRegex(@"[.*+?()\[\]{}|^$\\]")]
    private static partial Regex RegexMeta();
}
