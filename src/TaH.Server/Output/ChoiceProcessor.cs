using TaH.Engine.Generation;
using TaH.Engine.Tokenization;

namespace TaH.Server.Output;

/// <summary>
/// What one choice adds to the response: text by kind, completed tool calls, and the generated
/// tokens it covers (for their depths and log-probabilities). <see cref="FinishReason"/> is set
/// on the last one.
/// </summary>
public sealed record OutputDelta(
    string Content,
    string Reasoning,
    IReadOnlyList<ParsedToolCall> ToolCalls,
    IReadOnlyList<TokenEvent> Tokens,
    string? FinishReason);

/// <summary>What a choice's output goes through, in order.</summary>
public sealed record OutputOptions(IReadOnlyList<string> StopStrings, bool ParseReasoning, bool ParseToolCalls);

/// <summary>
/// One choice's output pipeline, in the order the text flows: detokenizer → stop strings →
/// reasoning split → tool-call parsing. Tokens whose text is held back (a partial UTF-8
/// character, a possible stop string or tag) ride with the next delta that has output, so every
/// generated token is reported exactly once. Not thread-safe: one per choice.
/// </summary>
public sealed class ChoiceProcessor
{
    private readonly IncrementalDetokenizer _detokenizer;
    private readonly StopStringMatcher? _stops;
    private readonly Qwen3ReasoningParser? _reasoning;
    private readonly Qwen3ToolCallParser? _tools;
    private readonly List<TokenEvent> _pending = [];
    private bool _finished;

    public ChoiceProcessor(TextTokenizer tokenizer, OutputOptions options)
    {
        _detokenizer = tokenizer.CreateDetokenizer(skipSpecialTokens: true);
        _stops = options.StopStrings.Count > 0 ? new StopStringMatcher(options.StopStrings) : null;
        _reasoning = options.ParseReasoning ? new Qwen3ReasoningParser() : null;
        _tools = options.ParseToolCalls ? new Qwen3ToolCallParser() : null;
    }

    public DepthTally Depths { get; } = new();

    /// <summary>A stop string was found: the caller should end the request and call <see cref="Finish"/>.</summary>
    public bool StopStringMatched => _stops?.Matched == true;

    public int ToolCalls { get; private set; }

    /// <summary>Text the output starts with that was not generated (a continued assistant message), parsed like the rest.</summary>
    public OutputDelta? Prefill(string text)
    {
        var (reasoning, content, calls) = Route(text);
        return Take(reasoning, content, calls, null, includeTokens: false);
    }

    /// <summary>Adds a generated token; returns a delta when it completes some output.</summary>
    public OutputDelta? Add(TokenEvent token)
    {
        if (_finished || StopStringMatched)
        {
            return null;
        }

        _pending.Add(token);
        Depths.Add(token.Depth);
        var text = _detokenizer.Add(token.Token);
        if (_stops is not null)
        {
            text = _stops.Push(text);
        }

        var (reasoning, content, calls) = Route(text);
        return Take(reasoning, content, calls, null, includeTokens: true);
    }

    /// <summary>
    /// Ends the choice: held text is released and the last delta carries the finish reason.
    /// <paramref name="engineFinish"/> is the engine's reason, null when a stop string ended it.
    /// </summary>
    public OutputDelta Finish(FinishReason? engineFinish)
    {
        _finished = true;
        string text;
        if (StopStringMatched)
        {
            text = string.Empty;
        }
        else
        {
            text = _detokenizer.Flush();
            if (_stops is not null)
            {
                text = _stops.Push(text);
                text += _stops.Flush();
            }
        }

        var (reasoning, content, calls) = Route(text);
        var list = new List<ParsedToolCall>(calls);
        if (_reasoning is not null)
        {
            var (r, c) = _reasoning.Flush();
            reasoning += r;
            if (_tools is not null)
            {
                var (c2, more) = _tools.Push(c);
                content += c2;
                list.AddRange(more);
                ToolCalls += more.Count;
            }
            else
            {
                content += c;
            }
        }

        if (_tools is not null)
        {
            content += _tools.Flush();
        }

        string reason = ToolCalls > 0 ? "tool_calls" : engineFinish == FinishReason.Length ? "length" : "stop";
        return Take(reasoning, content, list, reason, includeTokens: true)!;
    }

    private (string Reasoning, string Content, IReadOnlyList<ParsedToolCall> Calls) Route(string text)
    {
        if (text.Length == 0)
        {
            return (string.Empty, string.Empty, []);
        }

        var (reasoning, content) = _reasoning is null ? (string.Empty, text) : _reasoning.Push(text);
        if (_tools is null || content.Length == 0)
        {
            return (reasoning, content, []);
        }

        var (rest, calls) = _tools.Push(content);
        ToolCalls += calls.Count;
        return (reasoning, rest, calls);
    }

    private OutputDelta? Take(string reasoning, string content, IReadOnlyList<ParsedToolCall> calls, string? finish, bool includeTokens)
    {
        if (finish is null && reasoning.Length == 0 && content.Length == 0 && calls.Count == 0)
        {
            return null;
        }

        IReadOnlyList<TokenEvent> tokens = [];
        if (includeTokens)
        {
            tokens = [.. _pending];
            _pending.Clear();
        }

        return new OutputDelta(content, reasoning, calls, tokens, finish);
    }
}
