namespace TaH.Server.Output;

/// <summary>
/// Splits Qwen3's output into reasoning and content, as vLLM's qwen3 reasoning parser does:
/// an output that opens with <c>&lt;think&gt;</c> is reasoning up to <c>&lt;/think&gt;</c>, the
/// rest is content; an output that does not (enable_thinking false: the template already closed
/// an empty think block) is all content. Streaming: text that could be the start of a tag is
/// held back, so tags never reach the client. The new lines around the tags are dropped.
/// </summary>
public sealed class Qwen3ReasoningParser
{
    public const string Open = "<think>";
    public const string Close = "</think>";

    private State _state = State.Undecided;
    private string _buffer = string.Empty;
    private bool _trimReasoningStart;
    private bool _trimContentStart;

    private enum State
    {
        Undecided,
        Reasoning,
        Content,
    }

    /// <summary>Adds output text; returns the reasoning and content it completes.</summary>
    public (string Reasoning, string Content) Push(string text)
    {
        _buffer += text;
        string reasoning = string.Empty, content = string.Empty;
        while (true)
        {
            switch (_state)
            {
                case State.Undecided:
                    {
                        var start = _buffer.TrimStart();
                        if (start.StartsWith(Open, StringComparison.Ordinal))
                        {
                            _buffer = start[Open.Length..];
                            _state = State.Reasoning;
                            _trimReasoningStart = true;
                            continue;
                        }

                        if (start.Length == 0 || Open.StartsWith(start, StringComparison.Ordinal))
                        {
                            return (reasoning, content); // could still be "<think>"
                        }

                        _state = State.Content;
                        continue;
                    }

                case State.Reasoning:
                    {
                        if (_trimReasoningStart)
                        {
                            // The new lines after <think> may come in later tokens.
                            _buffer = _buffer.TrimStart('\n');
                            _trimReasoningStart = _buffer.Length == 0;
                        }

                        int end = _buffer.IndexOf(Close, StringComparison.Ordinal);
                        if (end >= 0)
                        {
                            reasoning += _buffer[..end].TrimEnd('\n');
                            _buffer = _buffer[(end + Close.Length)..];
                            _state = State.Content;
                            _trimContentStart = true;
                            continue;
                        }

                        // Hold back a possible start of "</think>" and trailing new lines (dropped before the tag).
                        int hold = TagScanner.PartialTagSuffix(_buffer, Close);
                        var body = _buffer[..^hold];
                        int kept = body.Length - body.TrimEnd('\n').Length;
                        hold += kept;
                        reasoning += _buffer[..^hold];
                        _buffer = _buffer[^hold..];
                        return (reasoning, content);
                    }

                default:
                    {
                        if (_trimContentStart)
                        {
                            _buffer = _buffer.TrimStart();
                            _trimContentStart = _buffer.Length == 0;
                        }

                        content += _buffer;
                        _buffer = string.Empty;
                        return (reasoning, content);
                    }
            }
        }
    }

    /// <summary>The end of the output: held text goes where it was heading.</summary>
    public (string Reasoning, string Content) Flush()
    {
        var rest = _buffer;
        _buffer = string.Empty;
        return _state switch
        {
            State.Reasoning => (rest, string.Empty),
            _ when _trimContentStart => (string.Empty, rest.TrimStart()),
            _ => (string.Empty, rest),
        };
    }
}
