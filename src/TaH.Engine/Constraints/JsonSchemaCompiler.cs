using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using static TaH.Engine.Constraints.Pattern;

namespace TaH.Engine.Constraints;

/// <summary>
/// Compiles a JSON Schema (2020-12, with draft-07's <c>definitions</c> and array <c>items</c>)
/// into rules of a grammar whose outputs are instances of it. Every output is valid; not every
/// valid instance is an output: properties come in the schema's order, objects get no properties
/// the schema does not allow explicitly (as OpenAI's strict mode: an absent
/// additionalProperties is false), arrays no items it does not ask for, and numbers with bounds
/// are integers. A keyword that constrains what this compiler cannot enforce is refused by name;
/// annotations are ignored.
/// </summary>
internal sealed class JsonSchemaCompiler
{
    private static readonly HashSet<string> Annotations =
    [
        "$schema", "$id", "$comment", "$anchor", "$vocabulary", "title", "description", "default", "examples",
        "deprecated", "readOnly", "writeOnly", "contentMediaType", "contentEncoding", "contentSchema", "$defs", "definitions",
    ];

    private static readonly HashSet<string> Unsupported =
    [
        "pattern", "patternProperties", "propertyNames", "minProperties", "maxProperties", "dependentRequired",
        "dependentSchemas", "dependencies", "not", "if", "then", "else", "contains", "minContains", "maxContains",
        "multipleOf", "unevaluatedProperties", "unevaluatedItems", "$dynamicRef", "$dynamicAnchor", "$recursiveRef",
        "$recursiveAnchor",
    ];

    private static readonly string[] ObjectKeywords = ["properties", "required", "additionalProperties"];
    private static readonly string[] ArrayKeywords = ["items", "prefixItems", "minItems", "maxItems", "additionalItems"];
    private static readonly string[] StringKeywords = ["minLength", "maxLength", "format"];
    private static readonly string[] NumberKeywords = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

    /// <summary>Keywords that constrain a value (as opposed to annotations and applicators handled on their own).</summary>
    private static readonly HashSet<string> Constraining =
        [.. ObjectKeywords, .. ArrayKeywords, .. StringKeywords, .. NumberKeywords, "type", "enum", "const", "uniqueItems"];

    private static readonly JsonWriterOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Formats and the patterns of the strings they allow (all plain ASCII, so JSON writes them as they are).</summary>
    internal static readonly IReadOnlyDictionary<string, string> Formats = new Dictionary<string, string>
    {
        ["date"] = Date,
        ["time"] = Time,
        ["date-time"] = Date + "T" + Time,
        ["uuid"] = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        ["email"] = Local + @"(\." + Local + @"){0,2}@" + Label + @"(\." + Label + @"){0,2}\.[A-Za-z]{2,6}",
        ["ipv4"] = @"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}",
    };

    // Days that exist in every year (February up to the 28th), years 1000-9999.
    private const string Date = "[1-9][0-9]{3}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))";
    // UTC offsets within ±14:00, as .NET (and so its validators) accept them.
    private const string Time = @"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))";
    private const string Label = "[A-Za-z0-9]([A-Za-z0-9-]{0,14}[A-Za-z0-9])?";

    // Dot-separated parts that start and end with a letter or digit.
    private const string Local = "[A-Za-z0-9]([A-Za-z0-9_+-]{0,14}[A-Za-z0-9])?";

    private readonly JsonGrammar _json;
    private readonly GrammarBuilder _g;
    private readonly JsonElement _root;
    private readonly string _where;
    private readonly Dictionary<(string Pointer, Types Restrict), int> _rules = [];

    [Flags]
    private enum Types
    {
        None = 0,
        Null = 1,
        Boolean = 2,
        Integer = 4,
        Number = 8,
        String = 16,
        Array = 32,
        Object = 64,
        All = 127,
    }

    private JsonSchemaCompiler(JsonGrammar json, JsonElement root, string where)
    {
        _json = json;
        _g = json.Builder;
        _root = root;
        _where = where;
    }

    /// <summary>The rule of the values of <paramref name="schema"/> (a whole schema document), in <paramref name="json"/>'s grammar.</summary>
    /// <param name="where">How errors name the schema, e.g. "the schema" or "tool 'f' parameters".</param>
    public static int Compile(JsonGrammar json, JsonElement schema, string where) => new JsonSchemaCompiler(json, schema, where).Rule(schema, "#", Types.All);

    private ConstraintException Invalid(string pointer, string what) =>
        new($"{_where} is not a valid JSON Schema: {what} (at {pointer})", ConstraintError.Invalid);

    private ConstraintException Refuse(string keyword, string pointer, string? detail = null) =>
        ConstraintException.Unsupported(keyword, $"JSON Schema keyword '{keyword}' is not supported{(detail is null ? "" : $" ({detail})")} (in {_where}, at {pointer}); structured outputs never ignore a constraint");

    private int Rule(JsonElement schema, string pointer, Types restrict)
    {
        if (_rules.TryGetValue((pointer, restrict), out int id))
        {
            return id;
        }

        id = _g.Reserve(pointer);
        _rules[(pointer, restrict)] = id;
        _g.Define(id, Body(schema, pointer, restrict));
        return id;
    }

    private Pattern Body(JsonElement schema, string pointer, Types restrict)
    {
        switch (schema.ValueKind)
        {
            case JsonValueKind.True:
                return restrict == Types.All ? Call(_json.Any()) : ByTypes(default, pointer, restrict);
            case JsonValueKind.False:
                return Nothing;
            case JsonValueKind.Object:
                break;
            default:
                throw Invalid(pointer, "a schema must be an object or a boolean");
        }

        Check(schema, pointer);
        var constraining = schema.EnumerateObject().Select(p => p.Name).Where(Constraining.Contains).ToList();
        if (schema.TryGetProperty("$ref", out var reference))
        {
            if (constraining.Count > 0)
            {
                throw Refuse(constraining[0], pointer, "beside $ref; put it inside the referenced schema");
            }

            var (target, targetPointer) = Resolve(reference, pointer);
            return Call(Rule(target, targetPointer, restrict));
        }

        if (schema.TryGetProperty("allOf", out var allOf))
        {
            if (allOf.GetArrayLength() != 1 || constraining.Count > 0 || schema.TryGetProperty("anyOf", out _) || schema.TryGetProperty("oneOf", out _))
            {
                throw Refuse("allOf", pointer, "only a single subschema with nothing beside it");
            }

            return Call(Rule(allOf[0], pointer + "/allOf/0", restrict));
        }

        foreach (string name in new[] { "anyOf", "oneOf" })
        {
            if (!schema.TryGetProperty(name, out var branches))
            {
                continue;
            }

            if (constraining.FirstOrDefault(k => k != "type") is { } other)
            {
                throw Refuse(other, pointer, $"beside {name}; put it inside each alternative");
            }

            if (name == "anyOf" && schema.TryGetProperty("oneOf", out _))
            {
                throw Refuse("oneOf", pointer, "together with anyOf");
            }

            var types = restrict & DeclaredTypes(schema, pointer);
            if (name == "oneOf")
            {
                CheckDisjoint(branches, pointer);
            }

            return Alt([.. branches.EnumerateArray().Select((b, i) => Call(Rule(b, $"{pointer}/{name}/{i}", types)))]);
        }

        return ByTypes(schema, pointer, restrict & DeclaredTypes(schema, pointer));
    }

    /// <summary>The alternatives of the types a schema (without applicators) allows.</summary>
    private Pattern ByTypes(JsonElement schema, string pointer, Types types)
    {
        bool isObject = schema.ValueKind == JsonValueKind.Object;
        if (isObject && (schema.TryGetProperty("enum", out _) || schema.TryGetProperty("const", out _)))
        {
            return Literals(schema, pointer, types);
        }

        var parts = new List<Pattern>();
        if (types.HasFlag(Types.Null))
        {
            parts.Add(Lit("null"));
        }

        if (types.HasFlag(Types.Boolean))
        {
            parts.Add(Call(_json.Boolean()));
        }

        if (types.HasFlag(Types.Number) && !(isObject && HasAny(schema, NumberKeywords)))
        {
            parts.Add(Call(_json.Number()));
        }
        else if (types.HasFlag(Types.Integer) || types.HasFlag(Types.Number))
        {
            // Bounded numbers are written as integers in range: always valid, if not every valid number.
            var (lo, hi) = isObject ? IntegerBounds(schema, pointer) : (-JsonGrammar.Largest, JsonGrammar.Largest);
            if (lo > hi)
            {
                throw new ConstraintException($"{_where} admits no integer between its minimum and maximum (at {pointer})", ConstraintError.Unsatisfiable);
            }

            parts.Add(Call(_json.Integer(lo, hi)));
        }

        if (types.HasFlag(Types.String))
        {
            parts.Add(isObject ? StringValue(schema, pointer) : Call(_json.String()));
        }

        if (types.HasFlag(Types.Array))
        {
            parts.Add(isObject ? ArrayValue(schema, pointer) : Call(_json.Any()));
        }

        if (types.HasFlag(Types.Object))
        {
            parts.Add(isObject ? ObjectValue(schema, pointer) : Call(_json.FreeObject(_json.Any())));
        }

        return Alt([.. parts]);
    }

    private static bool HasAny(JsonElement schema, string[] keywords) => keywords.Any(k => schema.TryGetProperty(k, out _));

    /// <summary>What <c>type</c> says, or, without it, the types the schema's keywords speak about (all when none does).</summary>
    private Types DeclaredTypes(JsonElement schema, string pointer)
    {
        if (schema.TryGetProperty("type", out var type))
        {
            var names = type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().ToList() : [type];
            var result = Types.None;
            foreach (var name in names)
            {
                result |= name.GetString() switch
                {
                    "null" => Types.Null,
                    "boolean" => Types.Boolean,
                    "integer" => Types.Integer,
                    "number" => Types.Number,
                    "string" => Types.String,
                    "array" => Types.Array,
                    "object" => Types.Object,
                    var other => throw Invalid(pointer, $"'type' is '{other}'; the types are null, boolean, integer, number, string, array and object"),
                };
            }

            return result;
        }

        if (schema.TryGetProperty("enum", out _) || schema.TryGetProperty("const", out _))
        {
            return Types.All;
        }

        var inferred = Types.None;
        if (HasAny(schema, ObjectKeywords))
        {
            inferred |= Types.Object;
        }

        if (HasAny(schema, ArrayKeywords))
        {
            inferred |= Types.Array;
        }

        if (HasAny(schema, StringKeywords))
        {
            inferred |= Types.String;
        }

        if (HasAny(schema, NumberKeywords))
        {
            inferred |= Types.Number;
        }

        return inferred == Types.None ? Types.All : inferred;
    }

    private Pattern StringValue(JsonElement schema, string pointer)
    {
        int min = Count(schema, "minLength", pointer) ?? 0;
        int max = Count(schema, "maxLength", pointer) ?? int.MaxValue;
        if (min > max)
        {
            throw new ConstraintException($"{_where} has minLength {min} above maxLength {max} (at {pointer})", ConstraintError.Unsatisfiable);
        }

        if (schema.TryGetProperty("format", out var format))
        {
            string name = format.GetString()!;
            if (!Formats.TryGetValue(name, out var regex))
            {
                throw Refuse("format", pointer, $"format '{name}'; supported: {string.Join(", ", Formats.Keys)}");
            }

            if (min > 0 || max != int.MaxValue)
            {
                throw Refuse(min > 0 ? "minLength" : "maxLength", pointer, "together with format");
            }

            return Call(_g.Shared("format:" + name, () => _g.Add("format " + name, Seq(Lit("\""), RegexCompiler.Compile(regex), Lit("\"")))));
        }

        return Call(_json.String(min, max));
    }

    private Pattern ObjectValue(JsonElement schema, string pointer)
    {
        var listed = new List<(string Name, JsonElement Schema, string Pointer)>();
        if (schema.TryGetProperty("properties", out var properties))
        {
            foreach (var p in properties.EnumerateObject())
            {
                listed.Add((p.Name, p.Value, $"{pointer}/properties/{Escape(p.Name)}"));
            }
        }

        var required = new HashSet<string>(StringComparer.Ordinal);
        if (schema.TryGetProperty("required", out var req))
        {
            foreach (var r in req.EnumerateArray())
            {
                required.Add(r.GetString()!);
            }
        }

        // additionalProperties: absent or false, none; true, any value; a schema, values of it.
        int? extra = null;
        bool extrasForbidden = true;
        if (schema.TryGetProperty("additionalProperties", out var additional) && additional.ValueKind != JsonValueKind.False)
        {
            extrasForbidden = false;
            extra = Rule(additional, pointer + "/additionalProperties", Types.All);
        }

        foreach (string name in required.Where(r => listed.All(l => l.Name != r)).Order(StringComparer.Ordinal))
        {
            if (schema.TryGetProperty("additionalProperties", out var a) && a.ValueKind == JsonValueKind.False)
            {
                throw new ConstraintException($"{_where} requires property '{name}' but allows no property of that name (at {pointer})", ConstraintError.Unsatisfiable);
            }

            listed.Add((name, extra is null ? default : additional, pointer + "/additionalProperties"));
        }

        int n = listed.Count;
        // Node i: before listed property i with nothing written yet; n + 1 + i: the same after
        // something was written (so a comma comes first); then the extras loop and the end.
        int Empty0(int i) => i;
        int Written(int i) => n + 1 + i;
        int extras = (2 * n) + 2, end = extras + 1;
        var edges = new List<(int, int, Pattern)>();
        for (int i = 0; i < n; i++)
        {
            var (name, value, valuePointer) = listed[i];
            int rule = value.ValueKind == JsonValueKind.Undefined ? _json.Any() : Rule(value, valuePointer, Types.All);
            var entry = Seq(Lit(JsonText(name)), JsonGrammar.Colon, Call(rule));
            edges.Add((Empty0(i), Written(i + 1), entry));
            edges.Add((Written(i), Written(i + 1), Seq(Lit(","), JsonGrammar.Ws, entry)));
            if (!required.Contains(name))
            {
                edges.Add((Empty0(i), Empty0(i + 1), Pattern.Empty));
                edges.Add((Written(i), Written(i + 1), Pattern.Empty));
            }
        }

        edges.Add((Empty0(n), end, Pattern.Empty));
        edges.Add((Written(n), end, Pattern.Empty));
        if (!extrasForbidden)
        {
            var names = listed.Select(l => Encoding.UTF8.GetBytes(l.Name)).ToList();
            int key = _g.String(0, int.MaxValue, key: true, excluded: names);
            var entry = Seq(Call(key, Effect.AddKey), JsonGrammar.Colon, Call(extra!.Value));
            edges.Add((Empty0(n), extras, entry));
            edges.Add((Written(n), extras, Seq(Lit(","), JsonGrammar.Ws, entry)));
            edges.Add((extras, extras, Seq(Lit(","), JsonGrammar.Ws, entry)));
            edges.Add((extras, end, Pattern.Empty));
        }

        var body = new GraphP(end + 1, end, edges);
        return Call(_g.Add(pointer + " object", Seq(Lit("{"), JsonGrammar.Ws, body, JsonGrammar.Ws, Lit("}"))));
    }

    private Pattern ArrayValue(JsonElement schema, string pointer)
    {
        var prefix = new List<(JsonElement Schema, string Pointer)>();
        JsonElement? tail = null;
        string tailPointer = pointer + "/items";
        if (schema.TryGetProperty("prefixItems", out var prefixItems))
        {
            prefix.AddRange(prefixItems.EnumerateArray().Select((s, i) => (s, $"{pointer}/prefixItems/{i}")));
        }

        if (schema.TryGetProperty("items", out var items))
        {
            if (items.ValueKind == JsonValueKind.Array)
            {
                // draft-07 tuples: items is the prefix, additionalItems the rest.
                prefix.AddRange(items.EnumerateArray().Select((s, i) => (s, $"{pointer}/items/{i}")));
                if (schema.TryGetProperty("additionalItems", out var more))
                {
                    tail = more;
                    tailPointer = pointer + "/additionalItems";
                }
            }
            else
            {
                tail = items;
            }
        }

        int min = Count(schema, "minItems", pointer) ?? 0;
        int max = Count(schema, "maxItems", pointer) ?? int.MaxValue;
        if (min > max)
        {
            throw new ConstraintException($"{_where} has minItems {min} above maxItems {max} (at {pointer})", ConstraintError.Unsatisfiable);
        }

        if (schema.TryGetProperty("uniqueItems", out var unique) && unique.ValueKind == JsonValueKind.True)
        {
            throw Refuse("uniqueItems", pointer);
        }

        int p = Math.Min(prefix.Count, max);
        // Items past the prefix: of the tail schema; unconstrained ones only as far as minItems needs them.
        int? tailRule = tail is { ValueKind: JsonValueKind.False } ? null
            : tail is { } t ? Rule(t, tailPointer, Types.All)
            : min > p ? _json.Any() : null;
        if (min > p && tailRule is null)
        {
            throw new ConstraintException($"{_where} needs {min} items but allows only {p} (at {pointer})", ConstraintError.Unsatisfiable);
        }

        // Node 0: after "[", i + 1: after prefix item i, p + 1: after a tail item, p + 2: the end.
        int afterTail = p + 1, end = p + 2;
        var close = Seq(JsonGrammar.Ws, Lit("]"));
        var edges = new List<(int, int, Pattern)>();
        if (min == 0)
        {
            edges.Add((0, end, Lit("]")));
        }

        for (int i = 0; i < p; i++)
        {
            var item = Call(Rule(prefix[i].Schema, prefix[i].Pointer, Types.All));
            edges.Add((i, i + 1, i == 0 ? item : Seq(Lit(","), JsonGrammar.Ws, item)));
            if (i + 1 >= min)
            {
                edges.Add((i + 1, end, close));
            }
        }

        if (tailRule is { } tr && max > p)
        {
            // Items are counted only when a bound needs it, so unbounded items share their checks.
            // Whitespace after an item leads to both ',' (below maxItems) and ']' (at minItems or
            // more): one of them is always open, so no path is a dead end.
            bool counted = min > p || max != int.MaxValue;
            var item = Call(tr, counted ? Effect.Increment : Effect.None);
            int afterWs = end + 1;
            edges.Add((p, afterTail, p == 0 ? item : Seq(Lit(","), JsonGrammar.Ws, item)));
            edges.Add((afterTail, afterWs, JsonGrammar.Ws));
            edges.Add((afterWs, afterTail, Seq(Byte(',', counted ? Guard.BelowMax : Guard.None), JsonGrammar.Ws, item)));
            edges.Add((afterWs, end, Byte(']', counted ? Guard.AtLeastMin : Guard.None)));
        }

        var body = new GraphP(end + 2, end, edges);
        int rule = _g.Add(pointer + " array", Seq(Lit("["), JsonGrammar.Ws, body), Math.Max(0, min - p), max == int.MaxValue ? int.MaxValue : max - p);
        return Call(rule);
    }

    private Pattern Literals(JsonElement schema, string pointer, Types types)
    {
        var values = new List<JsonElement>();
        if (schema.TryGetProperty("const", out var constant))
        {
            values.Add(constant);
        }

        if (schema.TryGetProperty("enum", out var e))
        {
            var allowed = e.EnumerateArray().ToList();
            values = values.Count > 0 ? [.. values.Where(v => allowed.Any(a => JsonText(a) == JsonText(v)))] : allowed;
        }

        var kept = values.Where(v => Fits(v, schema, types, pointer)).Select(JsonText).Distinct(StringComparer.Ordinal).ToList();
        if (kept.Count == 0)
        {
            throw new ConstraintException($"{_where} admits no value: no value of its enum/const satisfies its other keywords (at {pointer})", ConstraintError.Unsatisfiable);
        }

        return Alt([.. kept.Select(Lit)]);
    }

    /// <summary>Whether an enum/const value satisfies the schema's type and other keywords.</summary>
    private bool Fits(JsonElement v, JsonElement schema, Types types, string pointer)
    {
        switch (v.ValueKind)
        {
            case JsonValueKind.Null:
                return types.HasFlag(Types.Null);
            case JsonValueKind.True or JsonValueKind.False:
                return types.HasFlag(Types.Boolean);
            case JsonValueKind.Number:
                {
                    var number = decimal.TryParse(v.GetRawText(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : (decimal?)null;
                    bool integral = number is { } x && x == decimal.Truncate(x);
                    if (!(types.HasFlag(Types.Number) || (types.HasFlag(Types.Integer) && integral)))
                    {
                        return false;
                    }

                    if (HasAny(schema, NumberKeywords))
                    {
                        if (number is not { } value)
                        {
                            return false;
                        }

                        var (lo, hi) = NumberBounds(schema, pointer);
                        return (lo is not { } l || (l.Exclusive ? value > l.Value : value >= l.Value)) && (hi is not { } h || (h.Exclusive ? value < h.Value : value <= h.Value));
                    }

                    return true;
                }

            case JsonValueKind.String:
                {
                    if (!types.HasFlag(Types.String))
                    {
                        return false;
                    }

                    var s = v.GetString()!;
                    int codePoints = s.EnumerateRunes().Count(), clusters = new StringInfo(s).LengthInTextElements;
                    if (Count(schema, "minLength", pointer) is { } min && Math.Min(codePoints, clusters) < min)
                    {
                        return false;
                    }

                    if (Count(schema, "maxLength", pointer) is { } max && Math.Max(codePoints, clusters) > max)
                    {
                        return false;
                    }

                    if (schema.TryGetProperty("format", out var format))
                    {
                        string name = format.GetString()!;
                        if (!Formats.TryGetValue(name, out var regex))
                        {
                            throw Refuse("format", pointer, $"format '{name}'");
                        }

                        return System.Text.RegularExpressions.Regex.IsMatch(s, $"^(?:{regex})$", System.Text.RegularExpressions.RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
                    }

                    return true;
                }

            case JsonValueKind.Array:
                return types.HasFlag(Types.Array) && !HasAny(schema, ArrayKeywords);
            case JsonValueKind.Object:
                return types.HasFlag(Types.Object) && !HasAny(schema, ObjectKeywords);
            default:
                return false;
        }
    }

    private (BigInteger Lo, BigInteger Hi) IntegerBounds(JsonElement schema, string pointer)
    {
        var (lo, hi) = NumberBounds(schema, pointer);
        BigInteger low = -JsonGrammar.Largest, high = JsonGrammar.Largest;
        if (lo is { } l)
        {
            var c = new BigInteger(decimal.Ceiling(l.Value));
            low = l.Exclusive && c == new BigInteger(l.Value) ? c + 1 : c;
        }

        if (hi is { } h)
        {
            var f = new BigInteger(decimal.Floor(h.Value));
            high = h.Exclusive && f == new BigInteger(h.Value) ? f - 1 : f;
        }

        if (low > JsonGrammar.Largest || high < -JsonGrammar.Largest)
        {
            throw Refuse(low > JsonGrammar.Largest ? "minimum" : "maximum", pointer, $"bounds beyond ±{JsonGrammar.Largest}");
        }

        return (BigInteger.Max(low, -JsonGrammar.Largest), BigInteger.Min(high, JsonGrammar.Largest));
    }

    private static ((decimal Value, bool Exclusive)? Lo, (decimal Value, bool Exclusive)? Hi) NumberBounds(JsonElement schema, string pointer)
    {
        (decimal, bool)? lo = null, hi = null;
        if (schema.TryGetProperty("minimum", out var min))
        {
            lo = (min.GetDecimal(), schema.TryGetProperty("exclusiveMinimum", out var x) && x.ValueKind == JsonValueKind.True);
        }

        if (schema.TryGetProperty("maximum", out var max))
        {
            hi = (max.GetDecimal(), schema.TryGetProperty("exclusiveMaximum", out var x) && x.ValueKind == JsonValueKind.True);
        }

        if (schema.TryGetProperty("exclusiveMinimum", out var emin) && emin.ValueKind == JsonValueKind.Number)
        {
            var v = emin.GetDecimal();
            lo = lo is { } l && l.Item1 > v ? l : (v, true);
        }

        if (schema.TryGetProperty("exclusiveMaximum", out var emax) && emax.ValueKind == JsonValueKind.Number)
        {
            var v = emax.GetDecimal();
            hi = hi is { } h && h.Item1 < v ? h : (v, true);
        }

        _ = pointer;
        return (lo, hi);
    }

    private static int? Count(JsonElement schema, string keyword, string pointer)
    {
        _ = pointer;
        return schema.TryGetProperty(keyword, out var v) ? (int)Math.Min(v.GetDecimal(), int.MaxValue) : null;
    }

    /// <summary>Refuses what cannot be enforced and what is malformed, naming the keyword.</summary>
    private void Check(JsonElement schema, string pointer)
    {
        foreach (var p in schema.EnumerateObject())
        {
            string name = p.Name;
            var v = p.Value;
            if (Unsupported.Contains(name))
            {
                throw Refuse(name, pointer);
            }

            switch (name)
            {
                case "type":
                    if (v.ValueKind == JsonValueKind.String || (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0 && v.EnumerateArray().All(t => t.ValueKind == JsonValueKind.String)))
                    {
                        break;
                    }

                    throw Invalid(pointer, "'type' must be a type name or a non-empty list of them");
                case "properties" or "$defs" or "definitions":
                    if (v.ValueKind != JsonValueKind.Object)
                    {
                        throw Invalid(pointer, $"'{name}' must be an object of schemas");
                    }

                    foreach (var sub in v.EnumerateObject())
                    {
                        RequireSchema(sub.Value, $"{pointer}/{name}/{Escape(sub.Name)}");
                    }

                    break;
                case "required":
                    if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(r => r.ValueKind != JsonValueKind.String))
                    {
                        throw Invalid(pointer, "'required' must be a list of property names");
                    }

                    break;
                case "additionalProperties" or "additionalItems":
                    RequireSchema(v, $"{pointer}/{name}");
                    break;
                case "items":
                    if (v.ValueKind == JsonValueKind.Array)
                    {
                        foreach (var (item, i) in v.EnumerateArray().Select((x, i) => (x, i)))
                        {
                            RequireSchema(item, $"{pointer}/items/{i}");
                        }
                    }
                    else
                    {
                        RequireSchema(v, $"{pointer}/items");
                    }

                    break;
                case "prefixItems" or "anyOf" or "oneOf" or "allOf":
                    if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() == 0)
                    {
                        throw Invalid(pointer, $"'{name}' must be a non-empty list of schemas");
                    }

                    foreach (var (item, i) in v.EnumerateArray().Select((x, i) => (x, i)))
                    {
                        RequireSchema(item, $"{pointer}/{name}/{i}");
                    }

                    break;
                case "enum":
                    if (v.ValueKind != JsonValueKind.Array)
                    {
                        throw Invalid(pointer, "'enum' must be a list of values");
                    }

                    break;
                case "minLength" or "maxLength" or "minItems" or "maxItems":
                    if (v.ValueKind != JsonValueKind.Number || !v.TryGetDecimal(out var count) || count < 0 || count != decimal.Truncate(count))
                    {
                        throw Invalid(pointer, $"'{name}' must be a non-negative integer");
                    }

                    break;
                case "minimum" or "maximum":
                    if (v.ValueKind != JsonValueKind.Number || !v.TryGetDecimal(out _))
                    {
                        throw Invalid(pointer, $"'{name}' must be a number");
                    }

                    break;
                case "exclusiveMinimum" or "exclusiveMaximum":
                    if (!(v.ValueKind is JsonValueKind.True or JsonValueKind.False || (v.ValueKind == JsonValueKind.Number && v.TryGetDecimal(out _))))
                    {
                        throw Invalid(pointer, $"'{name}' must be a number");
                    }

                    break;
                case "format" or "$ref":
                    if (v.ValueKind != JsonValueKind.String)
                    {
                        throw Invalid(pointer, $"'{name}' must be a string");
                    }

                    break;
                case "uniqueItems":
                    if (v.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                    {
                        throw Invalid(pointer, "'uniqueItems' must be true or false");
                    }

                    break;
            }
        }
    }

    private void RequireSchema(JsonElement v, string pointer)
    {
        if (v.ValueKind is not (JsonValueKind.Object or JsonValueKind.True or JsonValueKind.False))
        {
            throw Invalid(pointer, "a schema must be an object or a boolean");
        }
    }

    /// <summary>A <c>$ref</c> to this document: "#" or a JSON Pointer "#/...".</summary>
    private (JsonElement Schema, string Pointer) Resolve(JsonElement reference, string pointer)
    {
        string text = reference.GetString()!;
        if (!text.StartsWith('#'))
        {
            throw Refuse("$ref", pointer, $"'{text}' points outside this schema; only '#...' pointers within it are");
        }

        if (text.Length > 1 && text[1] != '/')
        {
            throw Refuse("$ref", pointer, $"'{text}' is an anchor; only JSON Pointers are");
        }

        var node = _root;
        foreach (var raw in text.Length <= 2 ? [] : text[2..].Split('/'))
        {
            string part = Uri.UnescapeDataString(raw).Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            if (node.ValueKind == JsonValueKind.Object && node.TryGetProperty(part, out var child))
            {
                node = child;
            }
            else if (node.ValueKind == JsonValueKind.Array && int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int index) && index < node.GetArrayLength())
            {
                node = node[index];
            }
            else
            {
                throw Invalid(pointer, $"'$ref' {text} points to nothing");
            }
        }

        RequireSchema(node, text);
        return (node, text);
    }

    /// <summary>oneOf needs exactly one branch to match: refused unless the branches clearly cannot both match.</summary>
    private void CheckDisjoint(JsonElement branches, string pointer)
    {
        var list = branches.EnumerateArray().Select((b, i) => (Schema: b, Pointer: $"{pointer}/oneOf/{i}")).ToList();
        for (int i = 0; i < list.Count; i++)
        {
            for (int j = i + 1; j < list.Count; j++)
            {
                if (!Disjoint(list[i].Schema, list[j].Schema, list[i].Pointer, 0))
                {
                    throw Refuse("oneOf", pointer, $"alternatives {i} and {j} may both match, and then oneOf fails; use anyOf, or make them differ by type, by const or enum, or by a required property");
                }
            }
        }
    }

    private bool Disjoint(JsonElement a, JsonElement b, string pointer, int depth)
    {
        if (depth > 16)
        {
            return false;
        }

        a = Deref(a, pointer);
        b = Deref(b, pointer);
        var ta = TypesOf(a, pointer);
        var tb = TypesOf(b, pointer);
        static Types Widen(Types t) => t.HasFlag(Types.Number) ? t | Types.Integer : t;
        if ((Widen(ta) & Widen(tb)) == Types.None)
        {
            return true;
        }

        var la = LiteralsOf(a);
        var lb = LiteralsOf(b);
        if (la is not null && lb is not null)
        {
            return !la.Overlaps(lb);
        }

        if ((Widen(ta) & Widen(tb)) == Types.Object && a.ValueKind == JsonValueKind.Object && b.ValueKind == JsonValueKind.Object)
        {
            var ra = RequiredOf(a);
            var rb = RequiredOf(b);
            foreach (string p in ra)
            {
                if (rb.Contains(p) && PropertyOf(a, p) is { } pa && PropertyOf(b, p) is { } pb && Disjoint(pa, pb, pointer, depth + 1))
                {
                    return true;
                }

                if (Forbids(b, p))
                {
                    return true;
                }
            }

            return rb.Any(p => Forbids(a, p));
        }

        return false;
    }

    private JsonElement Deref(JsonElement s, string pointer)
    {
        for (int i = 0; i < 32 && s.ValueKind == JsonValueKind.Object && s.TryGetProperty("$ref", out var r); i++)
        {
            s = Resolve(r, pointer).Schema;
        }

        return s;
    }

    private Types TypesOf(JsonElement s, string pointer)
    {
        if (s.ValueKind != JsonValueKind.Object)
        {
            return s.ValueKind == JsonValueKind.False ? Types.None : Types.All;
        }

        if (LiteralsOf(s) is { } literals)
        {
            return literals.Select(l => JsonDocument.Parse(l).RootElement.ValueKind switch
            {
                JsonValueKind.Null => Types.Null,
                JsonValueKind.True or JsonValueKind.False => Types.Boolean,
                JsonValueKind.Number => Types.Number,
                JsonValueKind.String => Types.String,
                JsonValueKind.Array => Types.Array,
                _ => Types.Object,
            }).Aggregate(Types.None, (x, y) => x | y);
        }

        foreach (string name in new[] { "anyOf", "oneOf" })
        {
            if (s.TryGetProperty(name, out var branches) && branches.ValueKind == JsonValueKind.Array)
            {
                return branches.EnumerateArray().Select(b => TypesOf(Deref(b, pointer), pointer)).Aggregate(Types.None, (x, y) => x | y) & DeclaredTypes(s, pointer);
            }
        }

        return DeclaredTypes(s, pointer);
    }

    private static HashSet<string>? LiteralsOf(JsonElement s)
    {
        if (s.ValueKind != JsonValueKind.Object)
        {
            return null;
        }

        if (s.TryGetProperty("const", out var c))
        {
            return [JsonText(c)];
        }

        return s.TryGetProperty("enum", out var e) && e.ValueKind == JsonValueKind.Array ? [.. e.EnumerateArray().Select(JsonText)] : null;
    }

    private static HashSet<string> RequiredOf(JsonElement s) =>
        s.TryGetProperty("required", out var r) && r.ValueKind == JsonValueKind.Array ? [.. r.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.String).Select(x => x.GetString()!)] : [];

    private static JsonElement? PropertyOf(JsonElement s, string name) =>
        s.TryGetProperty("properties", out var p) && p.ValueKind == JsonValueKind.Object && p.TryGetProperty(name, out var v) ? v : null;

    /// <summary>Whether no instance of <paramref name="s"/> has property <paramref name="name"/> (validators allow what additionalProperties does not forbid).</summary>
    private static bool Forbids(JsonElement s, string name) =>
        PropertyOf(s, name) is { ValueKind: JsonValueKind.False }
        || (PropertyOf(s, name) is null && s.TryGetProperty("additionalProperties", out var a) && a.ValueKind == JsonValueKind.False);

    /// <summary>A value as compact JSON (non-ASCII kept as is), as the output writes it.</summary>
    internal static string JsonText(JsonElement value)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, Compact))
        {
            value.WriteTo(writer);
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    internal static string JsonText(string value) => JsonSerializer.Serialize(value, new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    private static string Escape(string name) => name.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);
}
