using System.Text.Json;
using static TaH.Engine.Constraints.Pattern;

namespace TaH.Engine.Constraints;

/// <summary>A tool a forced call may name, with its parameters' JSON Schema (null: any object).</summary>
public sealed record ToolSpec(string Name, string? Parameters);

/// <summary>
/// Compiles constraints for one vocabulary and keeps the last <see cref="CacheSize"/> of them by
/// their text, so a client that sends the same schema with every request compiles it once.
/// Thread-safe. Every method throws <see cref="ConstraintException"/> for what it cannot compile.
/// </summary>
/// <remarks>
/// <paramref name="allowThinking"/> (Qwen3 with its reasoning parser on and thinking not turned
/// off) lets the output open with a think block: <c>&lt;think&gt;</c>, any text but an end token,
/// <c>&lt;/think&gt;</c> and up to two new lines; the constraint applies to what follows, as vLLM
/// applies it after the reasoning ends.
/// </remarks>
public sealed class ConstraintCompiler(TokenVocabulary vocabulary, int cacheSize = 128)
{
    public const string ThinkOpen = "<think>";
    public const string ThinkClose = "</think>";
    public const string ToolCallOpen = "<tool_call>";
    public const string ToolCallClose = "</tool_call>";

    private readonly object _lock = new();
    private readonly Dictionary<string, LinkedListNode<(string Key, Lazy<Constraint> Value)>> _cache = new(StringComparer.Ordinal);
    private readonly LinkedList<(string Key, Lazy<Constraint> Value)> _order = new();

    public TokenVocabulary Vocabulary { get; } = vocabulary;

    public int CacheSize { get; } = cacheSize;

    /// <summary>Compiled constraints in the cache.</summary>
    public int CachedCount
    {
        get
        {
            lock (_lock)
            {
                return _cache.Count;
            }
        }
    }

    /// <summary>Instances of a JSON Schema (given as JSON text).</summary>
    public Constraint JsonSchema(string schema, bool allowThinking = false) => Compiled("json_schema", schema, allowThinking, () =>
    {
        using var document = Parse(schema, "the schema");
        return Build("json_schema", allowThinking, json => Call(JsonSchemaCompiler.Compile(json, document.RootElement, "the schema")));
    });

    /// <summary>Any JSON object (OpenAI's json_object), keys distinct.</summary>
    public Constraint JsonObject(bool allowThinking = false) => Compiled("json_object", "", allowThinking, () =>
        Build("json_object", allowThinking, json => Call(json.FreeObject(json.Any()))));

    /// <summary>Text matching a regex whole (see <see cref="RegexCompiler"/> for the syntax).</summary>
    public Constraint Regex(string pattern, bool allowThinking = false) => Compiled("regex", pattern, allowThinking, () =>
        Build("regex", allowThinking, json => Call(json.Builder.Shared("regex:" + pattern, () => json.Builder.Add("regex", RegexCompiler.Compile(pattern))))));

    /// <summary>Exactly one of the given strings.</summary>
    public Constraint Choice(IReadOnlyList<string> choices, bool allowThinking = false)
    {
        ArgumentNullException.ThrowIfNull(choices);
        if (choices.Count == 0)
        {
            throw new ConstraintException("the choice list is empty");
        }

        return Compiled("choice", System.Text.Json.JsonSerializer.Serialize(choices), allowThinking, () =>
            Build("choice", allowThinking, _ => Alt([.. choices.Select(c => Lit(c))])));
    }

    /// <summary>
    /// Qwen3 tool calls: <c>&lt;tool_call&gt;\n{"name": ..., "arguments": {...}}\n&lt;/tool_call&gt;</c>,
    /// one, or one or more separated by a new line, each naming one of <paramref name="tools"/>
    /// with arguments that follow its parameters. The tags are the vocabulary's added tokens when
    /// it has them.
    /// </summary>
    public Constraint ToolCalls(IReadOnlyList<ToolSpec> tools, bool multiple, bool allowThinking = false)
    {
        ArgumentNullException.ThrowIfNull(tools);
        if (tools.Count == 0)
        {
            throw new ConstraintException("no tools to call");
        }

        string key = System.Text.Json.JsonSerializer.Serialize(new { tools, multiple });
        return Compiled("tool_calls", key, allowThinking, () =>
        {
            var documents = new List<JsonDocument>();
            try
            {
                return Build($"tool_calls({string.Join(",", tools.Select(t => t.Name))})", allowThinking, json =>
                {
                    var choices = new List<Pattern>();
                    foreach (var tool in tools)
                    {
                        int arguments;
                        if (tool.Parameters is null)
                        {
                            arguments = json.FreeObject(json.Any());
                        }
                        else
                        {
                            var document = Parse(tool.Parameters, $"the parameters of tool '{tool.Name}'");
                            documents.Add(document);
                            arguments = JsonSchemaCompiler.Compile(json, document.RootElement, $"the parameters of tool '{tool.Name}'");
                        }

                        choices.Add(Seq(Lit(JsonSchemaCompiler.JsonText(tool.Name)), Lit(", \"arguments\": "), Call(arguments)));
                    }

                    var call = Seq(Tag(ToolCallOpen), Lit("\n{\"name\": "), Alt([.. choices]), Lit("}\n"), Tag(ToolCallClose));
                    return multiple ? Seq(call, Star(Seq(Lit("\n"), call))) : call;
                });
            }
            finally
            {
                foreach (var d in documents)
                {
                    d.Dispose();
                }
            }
        });
    }

    private Pattern Tag(string text) => Vocabulary.AddedToken(text) is { } id ? Token(id) : Lit(text);

    private Constraint Build(string description, bool allowThinking, Func<JsonGrammar, Pattern> body)
    {
        var g = new GrammarBuilder();
        int root = g.Reserve("root");
        var json = new JsonGrammar(g);
        var pattern = body(json);
        if (allowThinking && Vocabulary.AddedToken(ThinkOpen) is { } open && Vocabulary.AddedToken(ThinkClose) is { } close)
        {
            var think = Seq(Token(open), Star(Range(0, 255)), Token(close), Repeat(Lit("\n"), 0, 2));
            pattern = Seq(Opt(think), pattern);
        }

        g.Define(root, pattern);
        return new Constraint(g.Build(root), Vocabulary, description);
    }

    private static JsonDocument Parse(string text, string what)
    {
        try
        {
            return JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 128 });
        }
        catch (JsonException e)
        {
            throw new ConstraintException($"{what} is not valid JSON: {e.Message}");
        }
    }

    private Constraint Compiled(string kind, string text, bool allowThinking, Func<Constraint> compile)
    {
        string key = $"{kind}\u0001{allowThinking}\u0001{text}";
        Lazy<Constraint> entry;
        lock (_lock)
        {
            if (_cache.TryGetValue(key, out var node))
            {
                _order.Remove(node);
                _order.AddFirst(node);
                entry = node.Value.Value;
            }
            else
            {
                entry = new Lazy<Constraint>(compile, LazyThreadSafetyMode.ExecutionAndPublication);
                _cache[key] = _order.AddFirst((key, entry));
                while (_cache.Count > CacheSize)
                {
                    _cache.Remove(_order.Last!.Value.Key);
                    _order.RemoveLast();
                }
            }
        }

        try
        {
            return entry.Value;
        }
        catch
        {
            lock (_lock)
            {
                if (_cache.TryGetValue(key, out var node) && ReferenceEquals(node.Value.Value, entry))
                {
                    _cache.Remove(key);
                    _order.Remove(node);
                }
            }

            throw;
        }
    }
}
