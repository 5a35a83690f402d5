using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TaH.Engine.Generation;
using TaH.Engine.Sampling;
using TaH.Engine.Tokenization;
using TaH.Server.Output;

namespace TaH.Server.Tests;

/// <summary>
/// The output pipeline on text in the Qwen3 formats, fed whole, character by character and in
/// random pieces: the result must not depend on where the token boundaries fall.
/// </summary>
public sealed class OutputParserTests
{
    private static IEnumerable<string[]> Splits(string text)
    {
        yield return [text];
        yield return [.. text.Select(c => c.ToString())];
        var random = new Random(3);
        for (int round = 0; round < 20; round++)
        {
            var pieces = new List<string>();
            for (int i = 0; i < text.Length;)
            {
                int n = Math.Min(random.Next(1, 6), text.Length - i);
                pieces.Add(text.Substring(i, n));
                i += n;
            }

            yield return [.. pieces];
        }
    }

    [Theory]
    [InlineData("Hello world. STOP here", new[] { "STOP" }, "Hello world. ")]
    [InlineData("abcabd", new[] { "abd" }, "abc")]
    [InlineData("no stop in here", new[] { "zzz", "qq" }, "no stop in here")]
    [InlineData("first xy then yz", new[] { "yz", "xy" }, "first ")]
    [InlineData("aaab", new[] { "aab" }, "a")]
    [InlineData("ends with a partial sto", new[] { "stop" }, "ends with a partial sto")]
    public void StopStringsAreFoundWhereverTheyAreSplit(string text, string[] stops, string expected)
    {
        foreach (var pieces in Splits(text))
        {
            var matcher = new StopStringMatcher(stops);
            var sent = new StringBuilder();
            foreach (var piece in pieces)
            {
                var released = matcher.Push(piece);
                sent.Append(released);
                // Nothing sent may ever contain a stop string or end in a way the text later retracts.
                Assert.StartsWith(sent.ToString(), expected, StringComparison.Ordinal);
            }

            sent.Append(matcher.Flush());
            Assert.Equal(expected, sent.ToString());
            Assert.Equal(expected != text, matcher.Matched);
        }
    }

    [Theory]
    [InlineData("<think>\nLet me see: 17*23.\n</think>\n\n391", "Let me see: 17*23.", "391")]
    [InlineData("<think>\n\n</think>\n\nDirect answer", "", "Direct answer")]
    [InlineData("No thinking at all <think> here", "", "No thinking at all <think> here")]
    [InlineData("<think>\nunfinished thought", "unfinished thought", "")]
    [InlineData("<thin", "", "<thin")]
    [InlineData("<", "", "<")]
    public void ReasoningIsSplitAsVllmsQwen3Parser(string output, string reasoning, string content)
    {
        foreach (var pieces in Splits(output))
        {
            var parser = new Qwen3ReasoningParser();
            var r = new StringBuilder();
            var c = new StringBuilder();
            foreach (var piece in pieces)
            {
                var (pr, pc) = parser.Push(piece);
                r.Append(pr);
                c.Append(pc);
            }

            var (fr, fc) = parser.Flush();
            r.Append(fr);
            c.Append(fc);
            Assert.Equal(reasoning, r.ToString());
            Assert.Equal(content, c.ToString());
            Assert.DoesNotContain("</think>", c.ToString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void ToolCallsInTheFormTheQwen3TemplateWritesAreParsed()
    {
        // The assistant turn exactly as the real Qwen3 template renders a tool call.
        var template = Reference.Tokenizer.ChatTemplate!;
        var call = new ToolCall("get_weather", JsonNode.Parse("""{"city": "Paris", "days": [1, 2], "unit": "°C"}"""));
        var second = new ToolCall("get_time", JsonNode.Parse("""{"zone": "CET"}"""));
        var rendered = template.Render([ChatMessage.User("q"), ChatMessage.Assistant("Let me check.", [call, second])]);
        var turn = rendered[(rendered.LastIndexOf("<|im_start|>assistant\n", StringComparison.Ordinal) + "<|im_start|>assistant\n".Length)..rendered.LastIndexOf("<|im_end|>", StringComparison.Ordinal)];
        turn = turn[(turn.IndexOf("</think>", StringComparison.Ordinal) + "</think>".Length)..]; // the template's empty think block
        Assert.Contains("<tool_call>", turn, StringComparison.Ordinal);

        foreach (var pieces in Splits(turn))
        {
            var parser = new Qwen3ToolCallParser();
            var content = new StringBuilder();
            var calls = new List<ParsedToolCall>();
            foreach (var piece in pieces)
            {
                var (c, found) = parser.Push(piece);
                content.Append(c);
                calls.AddRange(found);
            }

            content.Append(parser.Flush());
            Assert.Equal("Let me check.", content.ToString().Trim());
            Assert.Equal(["get_weather", "get_time"], calls.Select(c => c.Name));
            Assert.True(JsonNode.DeepEquals(call.Arguments, JsonNode.Parse(calls[0].Arguments)), calls[0].Arguments);
            Assert.True(JsonNode.DeepEquals(second.Arguments, JsonNode.Parse(calls[1].Arguments)));
            Assert.NotEqual(calls[0].Id, calls[1].Id);
        }
    }

    [Theory]
    [InlineData("<tool_call>\n{not json}\n</tool_call>")]
    [InlineData("<tool_call>\n{\"arguments\": {}}\n</tool_call>")]
    [InlineData("before <tool_call>\n{\"name\": \"f\", \"arguments\": {}}")]
    public void WhatIsNotACompleteCallStaysContent(string output)
    {
        var parser = new Qwen3ToolCallParser();
        var (content, calls) = parser.Push(output);
        Assert.Empty(calls);
        Assert.Equal(output, content + parser.Flush());
    }

    [Fact]
    public void EveryTokenIsReportedOnceWithItsDepth()
    {
        // Real token ids of a Qwen3 answer with reasoning, a stop-free tool call and a multi-byte character.
        var text = "<think>\nhmm, 17·23\n</think>\n\nIt is <tool_call>\n{\"name\": \"calc\", \"arguments\": {\"x\": \"17*23\"}}\n</tool_call> 391 ✓";
        var ids = Reference.Tokenizer.Encode(text);
        var processor = new ChoiceProcessor(Reference.Tokenizer, new OutputOptions([], ParseReasoning: true, ParseToolCalls: true));
        var deltas = new List<OutputDelta>();
        for (int i = 0; i < ids.Count; i++)
        {
            var e = new TokenEvent(ids[i], 1 + (i % 2), null, new SampledToken(ids[i], 0f, null), null);
            if (processor.Add(e) is { } d)
            {
                deltas.Add(d);
            }
        }

        deltas.Add(processor.Finish(FinishReason.Stop));
        Assert.Equal(ids, deltas.SelectMany(d => d.Tokens).Select(t => t.Token));
        Assert.Equal(ids.Select((_, i) => 1 + (i % 2)), deltas.SelectMany(d => d.Tokens).Select(t => t.Depth));
        Assert.Equal("hmm, 17·23", string.Concat(deltas.Select(d => d.Reasoning)));
        Assert.Equal("It is  391 ✓", string.Concat(deltas.Select(d => d.Content)));
        var call = deltas.SelectMany(d => d.ToolCalls).Single();
        Assert.Equal("calc", call.Name);
        Assert.Equal("17*23", JsonDocument.Parse(call.Arguments).RootElement.GetProperty("x").GetString());
        Assert.Equal("tool_calls", deltas[^1].FinishReason);
        Assert.Equal(ids.Count(), processor.Depths.Tokens);
        Assert.Equal(ids.Count / 2, processor.Depths.Depth2Tokens);
    }
}
