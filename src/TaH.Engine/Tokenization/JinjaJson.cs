using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TaH.Engine.Tokenization;

/// <summary>
/// Jinja's <c>tojson</c> filter as @huggingface/jinja 0.5.11 computes it on values that came
/// from JavaScript's JSON.parse (the reference the golden files were made with): ", " and ": "
/// separators, non-ASCII kept, strings escaped as JSON.stringify does, numbers written as
/// JavaScript writes doubles (1.0 is "1", not Python's "1.0"), and object keys that are array
/// indices ("0", "12") first in numeric order, as JavaScript objects keep them.
/// </summary>
internal static class JinjaJson
{
    public static string ToJson(JsonNode? node)
    {
        var sb = new StringBuilder();
        Write(node, sb);
        return sb.ToString();
    }

    /// <summary>What <c>{{ value }}</c> prints: strings as they are, null as nothing, the rest as JavaScript would.</summary>
    public static string ToOutputString(JsonNode? node)
    {
        if (node is null)
        {
            return string.Empty;
        }
        return node.GetValueKind() switch
        {
            JsonValueKind.String => node.GetValue<string>(),
            JsonValueKind.Null or JsonValueKind.Undefined => string.Empty,
            JsonValueKind.True => "true",
            JsonValueKind.False => "false",
            JsonValueKind.Number => NumberOutput(ParseNumber(node)),
            _ => ToJson(node),
        };
    }

    /// <summary>Jinja truthiness of a value from JSON (as @huggingface/jinja: empty arrays and objects are false).</summary>
    public static bool IsTruthy(JsonNode? node)
    {
        if (node is null)
        {
            return false;
        }
        return node.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.String => node.GetValue<string>().Length > 0,
            JsonValueKind.Number => ParseNumber(node) is var d && d != 0 && !double.IsNaN(d),
            JsonValueKind.Array => node.AsArray().Count > 0,
            JsonValueKind.Object => node.AsObject().Count > 0,
            _ => false,
        };
    }

    /// <summary>JSON.stringify of a string.</summary>
    public static void WriteString(string s, StringBuilder sb)
    {
        sb.Append('"');
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    var lone = char.IsHighSurrogate(c) ? !(i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
                        : char.IsLowSurrogate(c) && !(i > 0 && char.IsHighSurrogate(s[i - 1]));
                    if (c < 0x20 || lone)
                    {
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        sb.Append(c);
                    }
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>JavaScript's Number.prototype.toString for a double (what JSON.stringify writes).</summary>
    public static string FormatNumber(double d)
    {
        if (double.IsNaN(d) || double.IsInfinity(d))
        {
            return "null"; // JSON.stringify writes non-finite numbers as null
        }
        if (d == 0)
        {
            return "0";
        }
        var r = d.ToString("R", CultureInfo.InvariantCulture); // shortest round-trip digits
        var negative = r[0] == '-';
        if (negative)
        {
            r = r[1..];
        }
        var exponent = 0;
        var e = r.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(r[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            r = r[..e];
        }
        var dot = r.IndexOf('.', StringComparison.Ordinal);
        var intPart = dot >= 0 ? r[..dot] : r;
        var fracPart = dot >= 0 ? r[(dot + 1)..] : string.Empty;
        var digits = (intPart + fracPart).TrimStart('0');
        // n: position of the decimal point relative to the digits, as in ECMA-262 Number::toString.
        var n = intPart.TrimStart('0').Length + exponent;
        if (intPart.TrimStart('0').Length == 0)
        {
            n = exponent - (fracPart.Length - fracPart.TrimStart('0').Length);
        }
        digits = digits.TrimEnd('0');
        var k = digits.Length;

        var sb = new StringBuilder();
        if (negative)
        {
            sb.Append('-');
        }
        if (k <= n && n <= 21)
        {
            sb.Append(digits).Append('0', n - k);
        }
        else if (0 < n && n <= 21)
        {
            sb.Append(digits, 0, n).Append('.').Append(digits, n, k - n);
        }
        else if (-6 < n && n <= 0)
        {
            sb.Append("0.").Append('0', -n).Append(digits);
        }
        else
        {
            sb.Append(digits[0]);
            if (k > 1)
            {
                sb.Append('.').Append(digits, 1, k - 1);
            }
            sb.Append('e').Append(n - 1 >= 0 ? '+' : '-').Append(Math.Abs(n - 1).ToString(CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }

    private static void Write(JsonNode? node, StringBuilder sb)
    {
        if (node is null)
        {
            sb.Append("null");
            return;
        }
        switch (node.GetValueKind())
        {
            case JsonValueKind.Object:
                sb.Append('{');
                var first = true;
                foreach (var (key, value) in JsOrder(node.AsObject()))
                {
                    if (!first)
                    {
                        sb.Append(", ");
                    }
                    first = false;
                    WriteString(key, sb);
                    sb.Append(": ");
                    Write(value, sb);
                }
                sb.Append('}');
                break;
            case JsonValueKind.Array:
                sb.Append('[');
                var array = node.AsArray();
                for (var i = 0; i < array.Count; i++)
                {
                    if (i > 0)
                    {
                        sb.Append(", ");
                    }
                    Write(array[i], sb);
                }
                sb.Append(']');
                break;
            case JsonValueKind.String:
                WriteString(node.GetValue<string>(), sb);
                break;
            case JsonValueKind.Number:
                sb.Append(FormatNumber(ParseNumber(node)));
                break;
            case JsonValueKind.True:
                sb.Append("true");
                break;
            case JsonValueKind.False:
                sb.Append("false");
                break;
            default:
                sb.Append("null");
                break;
        }
    }

    // JavaScript objects list array-index keys first, ascending, then the others in insertion order.
    private static IEnumerable<KeyValuePair<string, JsonNode?>> JsOrder(JsonObject obj)
    {
        List<(uint Index, KeyValuePair<string, JsonNode?> Entry)>? indexed = null;
        List<KeyValuePair<string, JsonNode?>> named = new(obj.Count);
        foreach (var entry in obj)
        {
            if (IsArrayIndex(entry.Key, out var index))
            {
                (indexed ??= []).Add((index, entry));
            }
            else
            {
                named.Add(entry);
            }
        }
        if (indexed is null)
        {
            return named;
        }
        return indexed.OrderBy(x => x.Index).Select(x => x.Entry).Concat(named);
    }

    private static bool IsArrayIndex(string key, out uint index)
    {
        index = 0;
        if (key.Length == 0 || key.Length > 10 || (key.Length > 1 && key[0] == '0'))
        {
            return false;
        }
        foreach (var c in key)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
        }
        var value = ulong.Parse(key, CultureInfo.InvariantCulture);
        if (value >= uint.MaxValue)
        {
            return false; // 2^32 - 1 is not an array index
        }
        index = (uint)value;
        return true;
    }

    private static double ParseNumber(JsonNode node)
    {
        if (node is JsonValue value && value.TryGetValue<double>(out var d))
        {
            return d;
        }
        return double.Parse(node.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture);
    }

    // {{ number }}: integers as JavaScript prints them; @huggingface/jinja keeps a JS number that is
    // an integer as an integer.
    private static string NumberOutput(double d) => FormatNumber(d) is var s && s == "null" ? (double.IsNaN(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity") : s;
}
