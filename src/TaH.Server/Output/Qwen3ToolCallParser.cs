using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace TaH.Server.Output;

/// <summary>A tool call parsed from the model's output; <see cref="Arguments"/> is JSON text, as OpenAI sends it.</summary>
public sealed record ParsedToolCall(string Id, string Name, string Arguments);

/// <summary>
/// Finds Qwen3's (Hermes-style) tool calls in content text:
/// <c>&lt;tool_call&gt;\n{"name": ..., "arguments": {...}}\n&lt;/tool_call&gt;</c>. Text outside the
/// tags stays content; a call is released whole once its closing tag arrives. A block whose JSON
/// is not a call, or that never closes, goes back into the content unchanged.
/// </summary>
public sealed class Qwen3ToolCallParser
{
    public const string Open = "<tool_call>";
    public const string Close = "</tool_call>";

    private static readonly JsonSerializerOptions CompactJson = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private string _buffer = string.Empty;
    private bool _inCall;

    /// <summary>Adds content text; returns the content outside calls and the calls completed now.</summary>
    public (string Content, IReadOnlyList<ParsedToolCall> Calls) Push(string text)
    {
        _buffer += text;
        var content = string.Empty;
        var calls = new List<ParsedToolCall>();
        while (true)
        {
            if (!_inCall)
            {
                int open = _buffer.IndexOf(Open, StringComparison.Ordinal);
                if (open < 0)
                {
                    int hold = TagScanner.PartialTagSuffix(_buffer, Open);
                    content += _buffer[..^hold];
                    _buffer = _buffer[^hold..];
                    return (content, calls);
                }

                content += _buffer[..open];
                _buffer = _buffer[(open + Open.Length)..];
                _inCall = true;
            }

            int close = _buffer.IndexOf(Close, StringComparison.Ordinal);
            if (close < 0)
            {
                return (content, calls);
            }

            var body = _buffer[..close];
            _buffer = _buffer[(close + Close.Length)..];
            _inCall = false;
            if (TryParse(body) is { } call)
            {
                calls.Add(call);
            }
            else
            {
                content += Open + body + Close;
            }
        }
    }

    /// <summary>The end of the output: an unclosed call or a held partial tag is content.</summary>
    public string Flush()
    {
        var rest = _inCall ? Open + _buffer : _buffer;
        _buffer = string.Empty;
        _inCall = false;
        return rest;
    }

    /// <summary>Reads one call's JSON: {"name": string, "arguments": object or JSON text}.</summary>
    public static ParsedToolCall? TryParse(string json)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(json.Trim());
        }
        catch (JsonException)
        {
            return null;
        }

        if (node is not JsonObject obj || obj["name"] is not JsonValue nameValue || nameValue.GetValueKind() != JsonValueKind.String)
        {
            return null;
        }

        string arguments;
        switch (obj["arguments"] ?? obj["parameters"])
        {
            case null:
                arguments = "{}";
                break;
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                arguments = v.GetValue<string>();
                break;
            case var other:
                arguments = other.ToJsonString(CompactJson);
                break;
        }

        return new ParsedToolCall(NewId(), nameValue.GetValue<string>(), arguments);
    }

    /// <summary>An id in OpenAI's style, e.g. call_3fA9...</summary>
    public static string NewId() => "call_" + RandomNumberGenerator.GetString("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 24);
}
