using System.Net.Http.Json;
using System.Text.Json.Nodes;
using TaH.Engine.Tokenization;

namespace TaH.Server.Tests;

/// <summary>Server-sent events exactly as they go over the wire, read with a raw HttpClient.</summary>
[Collection(ServerCollection.Name)]
public sealed class SseFramingTests(SharedServer shared)
{
    private const string Question = "Count to five.";

    private readonly TestServer _server = shared.Server;

    /// <summary>Posts a streaming request; returns the content type and the data lines of the events.</summary>
    private async Task<(string ContentType, List<string> Data)> StreamAsync(string path, object body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        using var response = await _server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        var raw = await response.Content.ReadAsStringAsync();

        // Framing: events are "data: ..." lines each followed by a blank line, nothing else.
        Assert.EndsWith("\n\n", raw, StringComparison.Ordinal);
        var events = raw[..^2].Split("\n\n");
        var data = new List<string>();
        foreach (var e in events)
        {
            Assert.DoesNotContain('\n', e);
            Assert.StartsWith("data: ", e, StringComparison.Ordinal);
            data.Add(e["data: ".Length..]);
        }

        Assert.Equal("[DONE]", data[^1]);
        Assert.Equal(1, data.Count(d => d == "[DONE]"));
        return (response.Content.Headers.ContentType!.MediaType!, data[..^1]);
    }

    [Fact]
    public async Task ChatChunksCarryTextAndOneDepthPerToken()
    {
        var expected = Reference.Greedy(Reference.ChatPrompt(Question), 20);
        var (type, data) = await StreamAsync("/v1/chat/completions", new
        {
            messages = new[] { new { role = "user", content = Question } },
            stream = true,
            stream_options = new { include_usage = true },
            max_tokens = 20,
            temperature = 0,
        });
        Assert.Equal("text/event-stream", type);
        var chunks = data.Select(d => JsonNode.Parse(d)!).ToList();

        Assert.Single(chunks.Select(c => (string)c["id"]!).Distinct());
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string)c["object"]!));
        Assert.Equal("assistant", (string)chunks[0]["choices"]![0]!["delta"]!["role"]!);

        var usage = chunks[^1];
        Assert.Empty(usage["choices"]!.AsArray());
        var choiceChunks = chunks[..^1];
        Assert.All(choiceChunks, c => Assert.Null(c["usage"]));

        var text = string.Concat(choiceChunks.Select(c => (string?)c["choices"]![0]!["delta"]!["content"]));
        var depths = choiceChunks.SelectMany(c => c["choices"]![0]!["tah"]?["depths"]?.AsArray().Select(d => (int)d!) ?? []).ToArray();
        var finishes = choiceChunks.Select(c => c["choices"]![0]!["finish_reason"]).Where(f => f is not null).Select(f => (string)f!).ToList();

        Assert.Equal(expected.Text, text);
        Assert.Equal(expected.Depths, depths);
        Assert.Equal(["length"], finishes);
        Assert.NotNull(choiceChunks[^1]["choices"]![0]!["finish_reason"]);
        Assert.Equal(20, (int)usage["usage"]!["completion_tokens"]!);
        Assert.Equal(expected.Depth2, (int)usage["usage"]!["tah"]!["depth2_tokens"]!);

        // A chunk with text has its tokens' depths; a token's text is never split from its depth.
        foreach (var c in choiceChunks.Skip(1))
        {
            if (c["choices"]![0]!["delta"]!["content"] is not null)
            {
                Assert.NotEmpty(c["choices"]![0]!["tah"]!["depths"]!.AsArray());
            }
        }
    }

    [Fact]
    public async Task CompletionsStreamAndMatchTheWholeResponse()
    {
        var prompt = Reference.Tokenizer.Encode("The quick brown fox");
        var expected = Reference.Greedy(prompt, 12);
        var (_, data) = await StreamAsync("/v1/completions", new { prompt = "The quick brown fox", stream = true, max_tokens = 12, temperature = 0, echo = true });
        var chunks = data.Select(d => JsonNode.Parse(d)!).ToList();
        Assert.All(chunks, c => Assert.Equal("text_completion", (string)c["object"]!));
        var text = string.Concat(chunks.Select(c => (string)c["choices"]![0]!["text"]!));
        Assert.Equal("The quick brown fox" + expected.Text, text);
        Assert.Equal(expected.Depths, chunks.SelectMany(c => c["choices"]![0]!["tah"]?["depths"]?.AsArray().Select(d => (int)d!) ?? []));

        var (status, whole) = await _server.PostAsync("/v1/completions", new { prompt = prompt.ToArray(), max_tokens = 12, temperature = 0, logprobs = 2 });
        Assert.Equal(200, status);
        var choice = whole!["choices"]![0]!;
        Assert.Equal(expected.Text, (string)choice["text"]!);
        Assert.Equal(12, choice["logprobs"]!["tokens"]!.AsArray().Count);
        Assert.All(choice["logprobs"]!["top_logprobs"]!.AsArray(), t => Assert.InRange(t!.AsObject().Count, 1, 2));
        Assert.Equal(prompt.Count, (int)whole["usage"]!["prompt_tokens"]!);
    }

    [Fact]
    public async Task AStopStringSplitAcrossTokensIsNeverSentInPart()
    {
        var expected = Reference.Greedy(Reference.ChatPrompt(Question), 24);
        var pieces = expected.Pieces;
        // A stop string from the end of one token to the start of the next (text before them included).
        int k = Enumerable.Range(2, pieces.Length - 3).First(i => pieces[i].Length >= 2 && pieces[i + 1].Length >= 2);
        string stop = pieces[k][^2..] + pieces[k + 1][..2];
        string before = expected.Text[..expected.Text.IndexOf(stop, StringComparison.Ordinal)];

        var body = new { messages = new[] { new { role = "user", content = Question } }, max_tokens = 24, temperature = 0, stop = new[] { "never appears \u2603", stop }, stream = true };
        var (_, data) = await StreamAsync("/v1/chat/completions", body);
        var chunks = data.Select(d => JsonNode.Parse(d)!).ToList();
        var streamed = string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["delta"]!["content"]));
        Assert.Equal(before, streamed);
        Assert.Equal("stop", (string)chunks[^1]["choices"]![0]!["finish_reason"]!);

        var (status, whole) = await _server.PostAsync("/v1/chat/completions", new { messages = body.messages, max_tokens = 24, temperature = 0, stop });
        Assert.Equal(200, status);
        Assert.Equal(before, (string)whole!["choices"]![0]!["message"]!["content"]!);
        Assert.Equal("stop", (string)whole["choices"]![0]!["finish_reason"]!);
        await _server.AssertEngineIdleAsync(); // the stop string ended the sequence in the engine
    }

    [Fact]
    public async Task ReasoningIsSplitFromContentStreamedOrNot()
    {
        // The conversation ends with an assistant message that has thought and begun to answer;
        // the model continues it, and the echoed message is parsed with the continuation.
        var messages = new object[]
        {
            new { role = "user", content = Question },
            new { role = "assistant", content = "<think>\nOne, two.\n</think>\n\nOne" },
        };
        var body = new Dictionary<string, object>
        {
            ["messages"] = messages,
            ["max_tokens"] = 4,
            ["temperature"] = 0,
            ["continue_final_message"] = true,
            ["add_generation_prompt"] = false,
            ["echo"] = true,
        };
        var (status, whole) = await _server.PostAsync("/v1/chat/completions", body);
        Assert.Equal(200, status);
        var message = whole!["choices"]![0]!["message"]!;
        Assert.Equal("One, two.", (string)message["reasoning_content"]!);
        Assert.StartsWith("One", (string)message["content"]!, StringComparison.Ordinal);
        Assert.DoesNotContain("think>", (string)message["content"]!, StringComparison.Ordinal);

        body["stream"] = true;
        var (_, data) = await StreamAsync("/v1/chat/completions", body);
        var chunks = data.Select(d => JsonNode.Parse(d)!).ToList();
        Assert.Equal("One, two.", string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["delta"]!["reasoning_content"])));
        Assert.Equal((string)message["content"]!, string.Concat(chunks.Select(c => (string?)c["choices"]![0]!["delta"]!["content"])));
    }

    [Fact]
    public async Task EnableThinkingFalseClosesTheThinkBlockInThePrompt()
    {
        async Task<int> PromptTokens(bool? thinking)
        {
            var body = new Dictionary<string, object> { ["messages"] = new[] { new { role = "user", content = Question } }, ["max_tokens"] = 1 };
            if (thinking is { } t)
            {
                body["chat_template_kwargs"] = new { enable_thinking = t };
            }

            var (status, json) = await _server.PostAsync("/v1/chat/completions", body);
            Assert.Equal(200, status);
            return (int)json!["usage"]!["prompt_tokens"]!;
        }

        Assert.Equal(Reference.ChatPrompt([ChatMessage.User(Question)]).Count, await PromptTokens(null));
        Assert.Equal(Reference.ChatPrompt([ChatMessage.User(Question)], enableThinking: false).Count, await PromptTokens(false));
        Assert.NotEqual(await PromptTokens(null), await PromptTokens(false));
    }

    [Fact]
    public async Task ContentPartsAreJoinedAsVllmDoes()
    {
        var (status, json) = await _server.PostAsync("/v1/chat/completions", new
        {
            messages = new[] { new { role = "user", content = new object[] { new { type = "text", text = "Hello" }, new { type = "text", text = "world" } } } },
            max_tokens = 1,
        });
        Assert.Equal(200, status);
        Assert.Equal(Reference.ChatPrompt("Hello\nworld").Count, (int)json!["usage"]!["prompt_tokens"]!);
    }
}
